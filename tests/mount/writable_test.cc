// Writable mounts, operation by operation, on a real mount: what a program sees must be what a
// local file system shows, with the errno it gives; the scratch directory records the changes as
// documented; the image's blobs never change.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mount/mount_fixture.h"

namespace layerfs::testing {
namespace {

const std::string kBig = RandomBytes(3 << 20, 7);

std::vector<std::string> BaseImage() {
  TarWriter l0;
  l0.Dir("etc").File("etc/hostname", "base\n").File("etc/passwd", "root:x:0:0\n");
  l0.Add({.path = "usr/bin/tool", .content = "tool v1\n", .mode = 0755});
  l0.File("usr/lib/a.so", "A").File("usr/lib/sub/b.so", "B").File("usr/lib/sub/c.so", "C");
  l0.Add({.path = "data/big.bin", .content = kBig, .mode = 0644});
  l0.File("hl/orig", "linked\n").Hardlink("hl/link", "hl/orig").File("hl/other", "other\n");
  l0.File("keep/file", "keep\n").File("keep/gone", "gone\n");
  l0.Add({.path = "xattr/f", .content = "x\n", .xattrs = {{"user.note", "hello"}}});
  l0.Add({.path = "suid/prog", .content = "#!/bin/sh\n", .mode = 04755});
  l0.Symlink("usr/lib/link.so", "a.so");
  l0.Dir("empty");
  TarWriter l1;
  l1.File("etc/hostname", "top\n");
  l1.File("opt/app/config", "cfg\n");
  l1.Whiteout("keep/gone");
  l1.Add({.path = "owned/file", .content = "mine\n", .mode = 0640, .uid = 1000, .gid = 1000});
  return {l0.Finish(), l1.Finish()};
}

std::string Read(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return "<errno " + std::to_string(errno) + ">";
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// Writes `data` with open(flags); returns 0 or the errno.
int Write(const std::string& path, const std::string& data, int flags = O_WRONLY | O_CREAT | O_TRUNC,
          mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags, mode);
  if (fd < 0) return errno;
  ssize_t n = ::write(fd, data.data(), data.size());
  int err = n < 0 ? errno : (static_cast<size_t>(n) != data.size() ? EIO : 0);
  if (::close(fd) != 0 && err == 0) err = errno;
  return err;
}

// The errno of a call that returned -1, or 0.
template <typename T>
int Err(T rc) {
  return rc < 0 ? errno : 0;
}

struct stat Lstat(const std::string& path) {
  struct stat st = {};
  if (::lstat(path.c_str(), &st) != 0) st.st_ino = 0;
  return st;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Every name readdir(3) returns, "." and ".." included.
std::multiset<std::string> ListAll(const std::string& dir) {
  std::multiset<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* de = ::readdir(d)) out.insert(de->d_name);
  ::closedir(d);
  return out;
}

std::set<std::string> List(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.insert(e.path().filename());
  }
  return out;
}

std::string GetXattr(const std::string& path, const std::string& name) {
  char buf[4096];
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf, sizeof(buf));
  if (n < 0) return "<errno " + std::to_string(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("writable: create, write and read back, with every open flag", "[writable]") {
  TestMount m(BaseImage());
  auto before = m.BlobDigests();
  CHECK(Write(m.P("new.txt"), "hello\n") == 0);
  CHECK(Read(m.P("new.txt")) == "hello\n");
  // O_EXCL on a new name, on a name made through the mount, and on an image file.
  CHECK(Write(m.P("excl"), "x", O_WRONLY | O_CREAT | O_EXCL) == 0);
  CHECK(Write(m.P("excl"), "x", O_WRONLY | O_CREAT | O_EXCL) == EEXIST);
  CHECK(Write(m.P("etc/passwd"), "x", O_WRONLY | O_CREAT | O_EXCL) == EEXIST);
  // O_APPEND to an image file copies it up and appends.
  CHECK(Write(m.P("etc/passwd"), "user:x:1000:1000\n", O_WRONLY | O_APPEND) == 0);
  CHECK(Read(m.P("etc/passwd")) == "root:x:0:0\nuser:x:1000:1000\n");
  // O_TRUNC of an image file: empty, without copying its content.
  CHECK(Write(m.P("data/big.bin"), "", O_WRONLY | O_TRUNC) == 0);
  CHECK(Lstat(m.P("data/big.bin")).st_size == 0);
  // O_RDWR: read what is there, overwrite the middle.
  int fd = ::open(m.P("etc/hostname").c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  char buf[8] = {};
  CHECK(::pread(fd, buf, sizeof(buf), 0) == 4);
  CHECK(std::string(buf, 4) == "top\n");
  CHECK(::pwrite(fd, "O", 1, 1) == 1);
  ::close(fd);
  CHECK(Read(m.P("etc/hostname")) == "tOp\n");
  // Opening a missing file without O_CREAT, a directory for writing.
  CHECK(Err(::open(m.P("nope").c_str(), O_RDONLY)) == ENOENT);
  CHECK(Err(::open(m.P("etc").c_str(), O_WRONLY)) == EISDIR);
  // What was written survives a remount.
  m.Remount();
  CHECK(Read(m.P("new.txt")) == "hello\n");
  CHECK(Read(m.P("etc/passwd")) == "root:x:0:0\nuser:x:1000:1000\n");
  CHECK(Read(m.P("etc/hostname")) == "tOp\n");
  CHECK(Lstat(m.P("data/big.bin")).st_size == 0);
  CHECK(m.BlobDigests() == before);
}

TEST_CASE("writable: O_TMPFILE is refused cleanly or works", "[writable]") {
  TestMount m(BaseImage());
  int fd = ::open(m.P("etc").c_str(), O_TMPFILE | O_RDWR, 0600);
  if (fd >= 0) {
    CHECK(::write(fd, "t", 1) == 1);
    ::close(fd);
  } else {
    CHECK((errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL));
  }
  CHECK(List(m.P("etc")) == std::set<std::string>{"hostname", "passwd"});
}

TEST_CASE("writable: truncate, ftruncate and fallocate", "[writable]") {
  TestMount m(BaseImage());
  CHECK(::truncate(m.P("data/big.bin").c_str(), 1000) == 0);
  CHECK(Read(m.P("data/big.bin")) == kBig.substr(0, 1000));
  CHECK(::truncate(m.P("data/big.bin").c_str(), 5000) == 0);
  CHECK(Read(m.P("data/big.bin")) == kBig.substr(0, 1000) + std::string(4000, '\0'));
  int fd = ::open(m.P("etc/passwd").c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  CHECK(::ftruncate(fd, 4) == 0);
  CHECK(::fallocate(fd, 0, 0, 1 << 20) == 0);
  struct stat st;
  CHECK(::fstat(fd, &st) == 0);
  CHECK(st.st_size == 1 << 20);
  CHECK(::fsync(fd) == 0);
  CHECK(::fdatasync(fd) == 0);
  ::close(fd);
  CHECK(Read(m.P("etc/passwd")).substr(0, 5) == std::string("root\0", 5));
  CHECK(Err(::truncate(m.P("etc").c_str(), 0)) == EISDIR);
  CHECK(Err(::truncate(m.P("nope").c_str(), 0)) == ENOENT);
}

TEST_CASE("writable: mkdir, rmdir and ENOTEMPTY on merged directories", "[writable]") {
  TestMount m(BaseImage());
  CHECK(::mkdir(m.P("newdir").c_str(), 0750) == 0);
  CHECK((Lstat(m.P("newdir")).st_mode & 07777) == 0750);
  CHECK(Err(::mkdir(m.P("newdir").c_str(), 0755)) == EEXIST);
  CHECK(Err(::mkdir(m.P("etc").c_str(), 0755)) == EEXIST);
  CHECK(::mkdir(m.P("newdir/sub").c_str(), 0755) == 0);
  CHECK(Err(::rmdir(m.P("newdir").c_str())) == ENOTEMPTY);
  CHECK(::rmdir(m.P("newdir/sub").c_str()) == 0);
  CHECK(::rmdir(m.P("newdir").c_str()) == 0);
  // An image directory: not empty while a lower entry shows, empty once they are all gone.
  CHECK(Err(::rmdir(m.P("usr/lib/sub").c_str())) == ENOTEMPTY);
  CHECK(::unlink(m.P("usr/lib/sub/b.so").c_str()) == 0);
  CHECK(Err(::rmdir(m.P("usr/lib/sub").c_str())) == ENOTEMPTY);
  CHECK(::unlink(m.P("usr/lib/sub/c.so").c_str()) == 0);
  CHECK(::rmdir(m.P("usr/lib/sub").c_str()) == 0);
  CHECK(!Exists(m.P("usr/lib/sub")));
  CHECK(::rmdir(m.P("empty").c_str()) == 0);
  CHECK(Err(::rmdir(m.P("etc/passwd").c_str())) == ENOTDIR);
  CHECK(Exists(m.Upper("usr/lib/.wh.sub")));
  m.Remount();
  CHECK(!Exists(m.P("usr/lib/sub")));
  CHECK(!Exists(m.P("empty")));
  CHECK(List(m.P("usr/lib")) == std::set<std::string>{"a.so", "link.so"});
}

TEST_CASE("writable: unlink records a whiteout; a new file by that name shows alone",
          "[writable]") {
  TestMount m(BaseImage());
  CHECK(::unlink(m.P("etc/passwd").c_str()) == 0);
  CHECK(!Exists(m.P("etc/passwd")));
  CHECK(Err(::unlink(m.P("etc/passwd").c_str())) == ENOENT);
  CHECK(Err(::unlink(m.P("etc").c_str())) == EISDIR);
  CHECK(Exists(m.Upper("etc/.wh.passwd")));
  CHECK(List(m.P("etc")) == std::set<std::string>{"hostname"});
  // A file whose name is taken again shows only the new content.
  CHECK(Write(m.P("etc/passwd"), "new\n", O_WRONLY | O_CREAT | O_EXCL) == 0);
  CHECK(Read(m.P("etc/passwd")) == "new\n");
  CHECK(!Exists(m.Upper("etc/.wh.passwd")));
  // Files made through the mount go without a trace.
  CHECK(Write(m.P("tmpfile"), "t") == 0);
  CHECK(::unlink(m.P("tmpfile").c_str()) == 0);
  CHECK(!Exists(m.Upper("tmpfile")));
  CHECK(!Exists(m.Upper(".wh.tmpfile")));
  // The image's names starting with .wh. belong to the whiteout format: refused.
  CHECK(Write(m.P(".wh.foo"), "x") == EINVAL);
  CHECK(Err(::mkdir(m.P(".wh..wh..opq").c_str(), 0755)) == EINVAL);
  m.Remount();
  CHECK(Read(m.P("etc/passwd")) == "new\n");
  CHECK(!Exists(m.P("tmpfile")));
}

TEST_CASE("writable: readdir lists . and .. and every name once", "[writable]") {
  TestMount m(BaseImage());
  using Names = std::multiset<std::string>;
  CHECK(ListAll(m.P("etc")) == Names{".", "..", "hostname", "passwd"});
  CHECK(Write(m.P("etc/new"), "n") == 0);
  CHECK(::unlink(m.P("etc/passwd").c_str()) == 0);
  CHECK(ListAll(m.P("etc")) == Names{".", "..", "hostname", "new"});
  CHECK(::mkdir(m.P("fresh").c_str(), 0755) == 0);
  CHECK(ListAll(m.P("fresh")) == Names{".", ".."});
  // A directory with more entries than one READDIR reply holds.
  for (int i = 0; i < 300; ++i) {
    CHECK(Write(m.P("fresh/file-with-a-long-name-" + std::to_string(i)), "") == 0);
  }
  CHECK(ListAll(m.P("fresh")).size() == 302);
  CHECK(ListAll(m.P("fresh")).count("file-with-a-long-name-299") == 1);
}

TEST_CASE("writable: removing entries while listing skips none of the others", "[writable]") {
  // Names of the image and names made through the mount, in one directory of several READDIR
  // replies; each batch readdir(3) returns is removed before it reads on, as `rm -r` does.
  TarWriter image;
  image.Dir("d");
  for (int i = 0; i < 200; ++i) image.File("d/image-file-" + std::to_string(i), "x");
  TestMount m({image.Finish()});
  for (int i = 0; i < 200; ++i) REQUIRE(Write(m.P("d/made-file-" + std::to_string(i)), "") == 0);
  DIR* d = ::opendir(m.P("d").c_str());
  REQUIRE(d != nullptr);
  std::set<std::string> removed;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    CHECK(removed.insert(name).second);  // never listed twice
    CHECK(::unlink(m.P("d/" + name).c_str()) == 0);
  }
  ::closedir(d);
  CHECK(removed.size() == 400);
  CHECK(List(m.P("d")).empty());
  CHECK(::rmdir(m.P("d").c_str()) == 0);
}

TEST_CASE("writable: a directory deleted and made again is opaque", "[writable]") {
  TestMount m(BaseImage());
  CHECK(RunShell("rm -rf " + ShellQuote(m.P("usr/lib"))) == 0);
  CHECK(!Exists(m.P("usr/lib")));
  CHECK(::mkdir(m.P("usr/lib").c_str(), 0755) == 0);
  CHECK(List(m.P("usr/lib")).empty());
  CHECK(Exists(m.Upper("usr/lib/.wh..wh..opq")));
  CHECK(Write(m.P("usr/lib/fresh"), "f") == 0);
  m.Remount();
  CHECK(List(m.P("usr/lib")) == std::set<std::string>{"fresh"});
  CHECK(List(m.P("usr")) == std::set<std::string>{"bin", "lib"});
}

TEST_CASE("writable: rename files and directories of the image, never EXDEV", "[writable]") {
  TestMount m(BaseImage());
  const ino_t tool_ino = Lstat(m.P("usr/bin/tool")).st_ino;
  CHECK(::rename(m.P("usr/bin/tool").c_str(), m.P("usr/bin/tool2").c_str()) == 0);
  CHECK(Lstat(m.P("usr/bin/tool2")).st_ino == tool_ino);
  CHECK(Read(m.P("usr/bin/tool2")) == "tool v1\n");
  CHECK(!Exists(m.P("usr/bin/tool")));
  // The content did not need copying for a rename.
  CHECK(Lstat(m.Upper("usr/bin/tool2")).st_size == 0);
  // A directory with contents, and subdirectories, to another directory.
  const ino_t lib_ino = Lstat(m.P("usr/lib")).st_ino;
  CHECK(::rename(m.P("usr/lib").c_str(), m.P("opt/lib").c_str()) == 0);
  CHECK(Lstat(m.P("opt/lib")).st_ino == lib_ino);
  CHECK(!Exists(m.P("usr/lib")));
  CHECK(Read(m.P("opt/lib/sub/b.so")) == "B");
  CHECK(Read(m.P("opt/lib/link.so")) == "A");
  CHECK(List(m.P("opt/lib")) == std::set<std::string>{"a.so", "link.so", "sub"});
  // A directory over an empty directory; not over a non-empty one; types must agree.
  CHECK(::mkdir(m.P("target").c_str(), 0755) == 0);
  CHECK(::rename(m.P("keep").c_str(), m.P("target").c_str()) == 0);
  CHECK(List(m.P("target")) == std::set<std::string>{"file"});
  CHECK(Err(::rename(m.P("opt/lib").c_str(), m.P("target").c_str())) == ENOTEMPTY);
  CHECK(Err(::rename(m.P("etc/passwd").c_str(), m.P("target").c_str())) == EISDIR);
  CHECK(Err(::rename(m.P("target").c_str(), m.P("etc/passwd").c_str())) == ENOTDIR);
  CHECK(Err(::rename(m.P("missing").c_str(), m.P("x").c_str())) == ENOENT);
  // A file over an image file.
  CHECK(Write(m.P("etc/new"), "replacement\n") == 0);
  CHECK(::rename(m.P("etc/new").c_str(), m.P("etc/passwd").c_str()) == 0);
  CHECK(Read(m.P("etc/passwd")) == "replacement\n");
  CHECK(List(m.P("etc")) == std::set<std::string>{"hostname", "passwd"});
  m.Remount();
  CHECK(Read(m.P("usr/bin/tool2")) == "tool v1\n");
  CHECK(!Exists(m.P("usr/bin/tool")));
  CHECK(!Exists(m.P("usr/lib")));
  CHECK(Read(m.P("opt/lib/sub/c.so")) == "C");
  CHECK(List(m.P("opt")) == std::set<std::string>{"app", "lib"});
  CHECK(List(m.P("target")) == std::set<std::string>{"file"});
  CHECK(!Exists(m.P("keep")));
  CHECK(Read(m.P("etc/passwd")) == "replacement\n");
}

TEST_CASE("writable: renameat2 NOREPLACE and EXCHANGE", "[writable]") {
  TestMount m(BaseImage());
  CHECK(Write(m.P("mine"), "mine\n") == 0);
  CHECK(Err(::renameat2(AT_FDCWD, m.P("mine").c_str(), AT_FDCWD, m.P("etc/passwd").c_str(),
                        RENAME_NOREPLACE)) == EEXIST);
  CHECK(::renameat2(AT_FDCWD, m.P("mine").c_str(), AT_FDCWD, m.P("mine2").c_str(),
                    RENAME_NOREPLACE) == 0);
  CHECK(::renameat2(AT_FDCWD, m.P("mine2").c_str(), AT_FDCWD, m.P("etc/passwd").c_str(),
                    RENAME_EXCHANGE) == 0);
  CHECK(Read(m.P("etc/passwd")) == "mine\n");
  CHECK(Read(m.P("mine2")) == "root:x:0:0\n");
  CHECK(Err(::renameat2(AT_FDCWD, m.P("mine2").c_str(), AT_FDCWD, m.P("none").c_str(),
                        RENAME_EXCHANGE)) == ENOENT);
  // Directories of the image exchanged.
  CHECK(::renameat2(AT_FDCWD, m.P("usr").c_str(), AT_FDCWD, m.P("opt").c_str(),
                    RENAME_EXCHANGE) == 0);
  CHECK(Read(m.P("usr/app/config")) == "cfg\n");
  CHECK(Read(m.P("opt/bin/tool")) == "tool v1\n");
  m.Remount();
  CHECK(Read(m.P("etc/passwd")) == "mine\n");
  CHECK(Read(m.P("mine2")) == "root:x:0:0\n");
  CHECK(List(m.P("usr")) == std::set<std::string>{"app"});
  CHECK(List(m.P("opt")) == std::set<std::string>{"bin", "lib"});
}

TEST_CASE("writable: symlinks and hard links, also to image files", "[writable]") {
  TestMount m(BaseImage());
  CHECK(::symlink("etc/hostname", m.P("sl").c_str()) == 0);
  char buf[256];
  ssize_t n = ::readlink(m.P("sl").c_str(), buf, sizeof(buf));
  CHECK(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))) == "etc/hostname");
  CHECK(Read(m.P("sl")) == "top\n");
  CHECK(Err(::symlink("x", m.P("sl").c_str())) == EEXIST);
  // A hard link to a file of the image: one inode, two links, a write shows through both.
  const ino_t ino = Lstat(m.P("etc/passwd")).st_ino;
  CHECK(::link(m.P("etc/passwd").c_str(), m.P("passwd-link").c_str()) == 0);
  CHECK(Lstat(m.P("passwd-link")).st_ino == ino);
  CHECK(Lstat(m.P("etc/passwd")).st_nlink == 2);
  CHECK(Write(m.P("passwd-link"), "more\n", O_WRONLY | O_APPEND) == 0);
  CHECK(Read(m.P("etc/passwd")) == "root:x:0:0\nmore\n");
  CHECK(Err(::link(m.P("etc").c_str(), m.P("etc-link").c_str())) == EPERM);
  m.Remount();
  CHECK(Lstat(m.P("passwd-link")).st_ino == Lstat(m.P("etc/passwd")).st_ino);
  CHECK(Lstat(m.P("etc/passwd")).st_nlink == 2);
  CHECK(Read(m.P("passwd-link")) == "root:x:0:0\nmore\n");
}

TEST_CASE("writable: hard links of the image stay one inode through changes", "[writable]") {
  TestMount m(BaseImage());
  const ino_t ino = Lstat(m.P("hl/orig")).st_ino;
  REQUIRE(Lstat(m.P("hl/link")).st_ino == ino);
  REQUIRE(Lstat(m.P("hl/link")).st_nlink == 2);
  CHECK(Write(m.P("hl/link"), "changed\n") == 0);
  CHECK(Read(m.P("hl/orig")) == "changed\n");
  CHECK(Lstat(m.P("hl/orig")).st_ino == ino);
  CHECK(Lstat(m.P("hl/link")).st_ino == ino);
  CHECK(Lstat(m.P("hl/orig")).st_nlink == 2);
  m.Remount();
  CHECK(Read(m.P("hl/orig")) == "changed\n");
  CHECK(Lstat(m.P("hl/orig")).st_ino == Lstat(m.P("hl/link")).st_ino);
}

TEST_CASE("writable: unlink of one name of a hard-linked image file", "[writable]") {
  TestMount m(BaseImage());
  const ino_t ino = Lstat(m.P("hl/orig")).st_ino;
  CHECK(::unlink(m.P("hl/orig").c_str()) == 0);
  CHECK(!Exists(m.P("hl/orig")));
  CHECK(Lstat(m.P("hl/link")).st_ino == ino);
  CHECK(Lstat(m.P("hl/link")).st_nlink == 1);
  CHECK(Read(m.P("hl/link")) == "linked\n");
  m.Remount();
  CHECK(!Exists(m.P("hl/orig")));
  CHECK(Read(m.P("hl/link")) == "linked\n");
  CHECK(Lstat(m.P("hl/link")).st_nlink == 1);
}

TEST_CASE("writable: mknod and mkfifo", "[writable]") {
  TestMount m(BaseImage());
  CHECK(::mkfifo(m.P("fifo").c_str(), 0640) == 0);
  CHECK(S_ISFIFO(Lstat(m.P("fifo")).st_mode));
  CHECK((Lstat(m.P("fifo")).st_mode & 07777) == 0640);
  if (::geteuid() == 0) {
    CHECK(::mknod(m.P("null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    struct stat st = Lstat(m.P("null"));
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == makedev(1, 3));
  }
  CHECK(Err(::mkfifo(m.P("fifo").c_str(), 0640)) == EEXIST);
  m.Remount();
  CHECK(S_ISFIFO(Lstat(m.P("fifo")).st_mode));
}

TEST_CASE("writable: chmod, chown and utimens copy metadata only", "[writable]") {
  TestMount m(BaseImage());
  const ino_t ino = Lstat(m.P("data/big.bin")).st_ino;
  CHECK(::chmod(m.P("data/big.bin").c_str(), 0600) == 0);
  CHECK(::chown(m.P("data/big.bin").c_str(), 1234, 5678) == 0);
  struct timespec times[2] = {{1000, 5}, {2000, 6}};
  CHECK(::utimensat(AT_FDCWD, m.P("data/big.bin").c_str(), times, 0) == 0);
  struct stat st = Lstat(m.P("data/big.bin"));
  CHECK(st.st_ino == ino);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_uid == 1234);
  CHECK(st.st_gid == 5678);
  CHECK(st.st_mtim.tv_sec == 2000);
  CHECK(st.st_mtim.tv_nsec == 6);
  CHECK(st.st_size == static_cast<off_t>(kBig.size()));
  CHECK(Read(m.P("data/big.bin")) == kBig);
  // The scratch directory holds no copy of the 3 MiB.
  CHECK(Lstat(m.Upper("data/big.bin")).st_size == 0);
  // chmod of a directory of the image, and of a symlink's target through it.
  CHECK(::chmod(m.P("usr").c_str(), 0700) == 0);
  CHECK((Lstat(m.P("usr")).st_mode & 07777) == 0700);
  CHECK(::lchown(m.P("usr/lib/link.so").c_str(), 7, 8) == 0);
  CHECK(Lstat(m.P("usr/lib/link.so")).st_uid == 7);
  m.Remount();
  st = Lstat(m.P("data/big.bin"));
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_uid == 1234);
  CHECK(st.st_mtim.tv_sec == 2000);
  CHECK(Read(m.P("data/big.bin")) == kBig);
  CHECK((Lstat(m.P("usr")).st_mode & 07777) == 0700);
  // Then a change of content copies the data, once, into the same file.
  CHECK(Write(m.P("data/big.bin"), "tail", O_WRONLY | O_APPEND) == 0);
  CHECK(Read(m.P("data/big.bin")) == kBig + "tail");
  CHECK(Lstat(m.Upper("data/big.bin")).st_size == static_cast<off_t>(kBig.size() + 4));
  CHECK(GetXattr(m.Upper("data/big.bin"), "user.layerfs.metacopy") ==
        "<errno " + std::to_string(ENODATA) + ">");
}

TEST_CASE("writable: xattrs", "[writable]") {
  TestMount m(BaseImage());
  CHECK(GetXattr(m.P("xattr/f"), "user.note") == "hello");
  CHECK(::lsetxattr(m.P("xattr/f").c_str(), "user.other", "v", 1, 0) == 0);
  CHECK(GetXattr(m.P("xattr/f"), "user.note") == "hello");
  CHECK(GetXattr(m.P("xattr/f"), "user.other") == "v");
  CHECK(Err(::lsetxattr(m.P("xattr/f").c_str(), "user.other", "w", 1, XATTR_CREATE)) == EEXIST);
  CHECK(::lremovexattr(m.P("xattr/f").c_str(), "user.note") == 0);
  CHECK(GetXattr(m.P("xattr/f"), "user.note") == "<errno " + std::to_string(ENODATA) + ">");
  char names[1024];
  ssize_t n = ::llistxattr(m.P("xattr/f").c_str(), names, sizeof(names));
  REQUIRE(n > 0);
  CHECK(std::string(names, static_cast<size_t>(n)) == std::string("user.other\0", 11));
  // layerfs's own bookkeeping never shows and cannot be set.
  CHECK(Err(::lsetxattr(m.P("etc/passwd").c_str(), "user.layerfs.metacopy", "", 0, 0)) == EPERM);
  CHECK(::lsetxattr(m.P("etc/passwd").c_str(), "user.a", "b", 1, 0) == 0);
  n = ::llistxattr(m.P("etc/passwd").c_str(), names, sizeof(names));
  CHECK(std::string(names, static_cast<size_t>(std::max<ssize_t>(n, 0))) ==
        std::string("user.a\0", 7));
  CHECK(::lremovexattr(m.P("etc/hostname").c_str(), "user.none") == -1);
  CHECK(errno == ENODATA);
  CHECK(::lsetxattr(m.P("etc").c_str(), "user.dir", "d", 1, 0) == 0);
  m.Remount();
  CHECK(GetXattr(m.P("xattr/f"), "user.other") == "v");
  CHECK(GetXattr(m.P("etc"), "user.dir") == "d");
  CHECK(Read(m.P("etc/passwd")) == "root:x:0:0\n");
}

TEST_CASE("writable: statfs reports the scratch file system", "[writable]") {
  TestMount m(BaseImage());
  struct statvfs sv;
  REQUIRE(::statvfs(m.P("").c_str(), &sv) == 0);
  CHECK(sv.f_bsize > 0);
  CHECK(sv.f_blocks > 0);
  CHECK(sv.f_namemax == 255);
  CHECK(!(sv.f_flag & ST_RDONLY));
}

TEST_CASE("writable: mmap reads and writes", "[writable]") {
  TestMount m(BaseImage());
  int fd = ::open(m.P("data/big.bin").c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  void* p = ::mmap(nullptr, kBig.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  REQUIRE(p != MAP_FAILED);
  char* c = static_cast<char*>(p);
  CHECK(std::string(c, 100) == kBig.substr(0, 100));
  std::memcpy(c + 4096, "mapped", 6);
  CHECK(::msync(p, kBig.size(), MS_SYNC) == 0);
  ::munmap(p, kBig.size());
  ::close(fd);
  std::string want = kBig;
  want.replace(4096, 6, "mapped");
  CHECK(Read(m.P("data/big.bin")) == want);
  m.Remount();
  CHECK(Read(m.P("data/big.bin")) == want);
}

TEST_CASE("writable: inode numbers stay through copy-up", "[writable]") {
  TestMount m(BaseImage());
  const ino_t file = Lstat(m.P("etc/passwd")).st_ino;
  const ino_t dir = Lstat(m.P("etc")).st_ino;
  CHECK(Write(m.P("etc/passwd"), "x") == 0);
  CHECK(Lstat(m.P("etc/passwd")).st_ino == file);
  CHECK(Lstat(m.P("etc")).st_ino == dir);
  // An open read-only descriptor taken before the copy-up reads the new content.
  int fd = ::open(m.P("etc/hostname").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK(Write(m.P("etc/hostname"), "changed\n") == 0);
  char buf[16] = {};
  CHECK(::pread(fd, buf, sizeof(buf), 0) == 8);
  CHECK(std::string(buf, 8) == "changed\n");
  ::close(fd);
}

TEST_CASE("writable: an unlinked file stays usable while open", "[writable]") {
  TestMount m(BaseImage());
  int fd = ::open(m.P("etc/passwd").c_str(), O_RDWR | O_APPEND);
  REQUIRE(fd >= 0);
  CHECK(::unlink(m.P("etc/passwd").c_str()) == 0);
  CHECK(::write(fd, "after\n", 6) == 6);
  struct stat st;
  CHECK(::fstat(fd, &st) == 0);
  CHECK(st.st_nlink == 0);
  char buf[64] = {};
  CHECK(::pread(fd, buf, sizeof(buf), 0) == 17);
  CHECK(std::string(buf, 17) == "root:x:0:0\nafter\n");
  ::close(fd);
  CHECK(!Exists(m.P("etc/passwd")));
}

TEST_CASE("writable: new files belong to the caller; setgid directories pass their group",
          "[writable]") {
  TestMount m(BaseImage());
  CHECK(::mkdir(m.P("shared").c_str(), 0775) == 0);
  CHECK(::chown(m.P("shared").c_str(), 0, 4321) == 0);
  CHECK(::chmod(m.P("shared").c_str(), 02775) == 0);
  CHECK(Write(m.P("shared/f"), "x") == 0);
  CHECK(Lstat(m.P("shared/f")).st_gid == 4321);
  CHECK(::mkdir(m.P("shared/sub").c_str(), 0755) == 0);
  CHECK((Lstat(m.P("shared/sub")).st_mode & S_ISGID) != 0);
  CHECK(Lstat(m.P("shared/sub")).st_gid == 4321);
  CHECK(Lstat(m.P("new-by-root")).st_ino == 0);
  CHECK(Write(m.P("new-by-root"), "r", O_WRONLY | O_CREAT, 0640) == 0);
  CHECK(Lstat(m.P("new-by-root")).st_uid == ::geteuid());
}

TEST_CASE("writable: concurrent writers lose nothing and copy up once", "[writable]") {
  TestMount m(BaseImage());
  // Racing first writes to one image file: the copy-up happens once, every write lands.
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int fd = ::open(m.P("data/big.bin").c_str(), O_WRONLY);
      if (fd < 0) {
        ++failures;
        return;
      }
      std::string tag = "thread" + std::to_string(t);
      if (::pwrite(fd, tag.data(), tag.size(), t * 100000) != static_cast<ssize_t>(tag.size())) {
        ++failures;
      }
      ::close(fd);
    });
  }
  for (auto& th : threads) th.join();
  threads.clear();
  CHECK(failures == 0);
  std::string got = Read(m.P("data/big.bin"));
  REQUIRE(got.size() == kBig.size());
  std::string want = kBig;
  for (int t = 0; t < kThreads; ++t) {
    std::string tag = "thread" + std::to_string(t);
    want.replace(static_cast<size_t>(t) * 100000, tag.size(), tag);
  }
  CHECK(got == want);
  // Many writers of many files, and creations and deletions in one directory.
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string name = m.P("etc/f" + std::to_string(t) + "-" + std::to_string(i));
        if (Write(name, name) != 0) ++failures;
        if (i % 2 == 1 && ::unlink(name.c_str()) != 0) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(List(m.P("etc")).size() == 2 + kThreads * 25);
  for (int t = 0; t < kThreads; ++t) {
    std::string name = m.P("etc/f" + std::to_string(t) + "-48");
    CHECK(Read(name) == name);
  }
}

TEST_CASE("writable: a full scratch file system gives ENOSPC and loses nothing", "[writable]") {
  if (::geteuid() != 0) return;  // mounting the small tmpfs needs root
  KernelMount small("tmpfs", "size=1m");
  {
    TestMount m(BaseImage(), small.Sub("scratch"));
    CHECK(Write(m.P("first"), "kept\n") == 0);
    int fd = ::open(m.P("fill").c_str(), O_WRONLY | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    std::string chunk(64 << 10, 'z');
    int err = 0;
    for (int i = 0; i < 64 && err == 0; ++i) {
      if (::write(fd, chunk.data(), chunk.size()) < 0) err = errno;
    }
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    ::close(fd);
    CHECK(err == ENOSPC);
    // A copy-up that does not fit fails as ENOSPC too, and the image file stays as it was.
    CHECK(Write(m.P("data/big.bin"), "x", O_WRONLY | O_APPEND) == ENOSPC);
    CHECK(Read(m.P("data/big.bin")) == kBig);
    CHECK(Read(m.P("first")) == "kept\n");
    CHECK(::unlink(m.P("fill").c_str()) == 0);
    CHECK(Write(m.P("after"), "room again\n") == 0);
    m.Remount();
    CHECK(Read(m.P("first")) == "kept\n");
    CHECK(Read(m.P("after")) == "room again\n");
    CHECK(Read(m.P("data/big.bin")) == kBig);
  }
}

TEST_CASE("writable: a read-only scratch file system gives EROFS", "[writable]") {
  if (::geteuid() != 0) return;
  KernelMount small("tmpfs", "size=4m");
  TestMount m(BaseImage(), small.Sub("scratch"));
  CHECK(Write(m.P("before"), "b") == 0);
  REQUIRE(RunShell("mount -o remount,ro " + ShellQuote(small.path())) == 0);
  CHECK(Write(m.P("after"), "a") == EROFS);
  CHECK(Write(m.P("etc/passwd"), "a", O_WRONLY | O_APPEND) == EROFS);
  CHECK(Err(::unlink(m.P("etc/hostname").c_str())) == EROFS);
  CHECK(Read(m.P("before")) == "b");
  CHECK(Read(m.P("etc/passwd")) == "root:x:0:0\n");
  REQUIRE(RunShell("mount -o remount,rw " + ShellQuote(small.path())) == 0);
}

TEST_CASE("writable: kill -9 during a large copy-up leaves the whole old file", "[writable]") {
  // 64 MiB, so that the copy takes long enough to be interrupted.
  const std::string huge = RandomBytes(64 << 20, 11);
  TarWriter l0;
  l0.File("huge.bin", huge);
  TestMount m({l0.Finish()});
  pid_t daemon = m.daemon_pid();
  REQUIRE(daemon > 0);
  pid_t child = ::fork();
  if (child == 0) {
    int fd = ::open(m.P("huge.bin").c_str(), O_WRONLY | O_APPEND);
    if (fd >= 0) (void)::write(fd, "appended", 8);
    ::_exit(0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ::kill(daemon, SIGKILL);
  int status;
  ::waitpid(child, &status, 0);
  m.Unmount();
  m.Mount();
  std::string got = Read(m.P("huge.bin"));
  CHECK(got.size() >= huge.size());
  const bool old = got == huge;
  const bool done = got == huge + "appended";
  CHECK((old || done));
  // And the file can be changed after the crash.
  CHECK(Write(m.P("huge.bin"), "!", O_WRONLY | O_APPEND) == 0);
  CHECK(Read(m.P("huge.bin")) == got + "!");
}

TEST_CASE("writable: the scratch directory belongs to one image and one mount", "[writable]") {
  TestMount m(BaseImage());
  // A second mount of the same scratch directory is refused while the first runs.
  TempDir other;
  ::mkdir(other.Sub("mnt").c_str(), 0755);
  std::string cmd = ShellQuote(LayerfsBinary()) + " mount " +
                    ShellQuote(m.image_dir() + "/manifest.json") + " " +
                    ShellQuote(other.Sub("mnt")) + " --cache " + ShellQuote(other.Sub("cache")) +
                    " --scratch " + ShellQuote(m.scratch()) + " 2>" + ShellQuote(other.Sub("err"));
  CHECK(RunShell(cmd) == 1);
  CHECK(ReadFile(other.Sub("err")).find("in use") != std::string::npos);
  // Another image with it is refused.
  m.Unmount();
  TarWriter l0;
  l0.File("other", "o");
  ::mkdir(other.Sub("image").c_str(), 0755);
  WriteDockerDir(other.Sub("image"), {l0.Finish()});
  cmd = ShellQuote(LayerfsBinary()) + " mount " + ShellQuote(other.Sub("image")) + " " +
        ShellQuote(other.Sub("mnt")) + " --cache " + ShellQuote(other.Sub("cache")) +
        " --scratch " + ShellQuote(m.scratch()) + " 2>" + ShellQuote(other.Sub("err"));
  CHECK(RunShell(cmd) == 1);
  CHECK(ReadFile(other.Sub("err")).find("another image") != std::string::npos);
  // A directory that is not a scratch directory is not taken over.
  WriteFile(other.Sub("notscratch/precious"), "p");
  cmd = ShellQuote(LayerfsBinary()) + " mount " + ShellQuote(other.Sub("image")) + " " +
        ShellQuote(other.Sub("mnt")) + " --cache " + ShellQuote(other.Sub("cache")) +
        " --scratch " + ShellQuote(other.Sub("notscratch")) + " 2>" + ShellQuote(other.Sub("err"));
  CHECK(RunShell(cmd) == 1);
  CHECK(ReadFile(other.Sub("err")).find("not empty") != std::string::npos);
  CHECK(ReadFile(other.Sub("notscratch/precious")) == "p");
}

}  // namespace layerfs::testing

namespace layerfs::testing {

TEST_CASE("writable: permissions are checked against the modes and owners shown", "[writable]") {
  if (::geteuid() != 0) return;  // needs to switch to another user
  TestMount m(BaseImage(), {}, {"-o", "allow_other"});
  REQUIRE(::mkdir(m.P("pub").c_str(), 0777) == 0);
  REQUIRE(::chmod(m.P("pub").c_str(), 01777) == 0);
  REQUIRE(Write(m.P("pub/rootfile"), "r") == 0);
  REQUIRE(Write(m.P("ro"), "r", O_WRONLY | O_CREAT, 0444) == 0);
  REQUIRE(::mkdir(m.P("mine").c_str(), 0755) == 0);
  REQUIRE(::chown(m.P("mine").c_str(), 65534, 65534) == 0);
  REQUIRE(::chmod(m.P("suid/prog").c_str(), 04777) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      _exit(90);
    }
    int step = 0;
    auto expect = [&](int got, int want) {
      ++step;
      if (got != want) {
        std::fprintf(stderr, "check %d: got %s, expected %s\n", step, std::strerror(got),
                     std::strerror(want));
        _exit(step);
      }
    };
    expect(Err(::open(m.P("ro").c_str(), O_WRONLY)), EACCES);
    expect(Err(::unlink(m.P("pub/rootfile").c_str())), EPERM);  // sticky directory
    expect(Write(m.P("pub/nobody"), "n"), 0);
    expect(Err(::chmod(m.P("ro").c_str(), 0777)), EPERM);
    expect(Write(m.P("mine/x"), "x"), 0);
    expect(Err(::chown(m.P("mine/x").c_str(), 0, 0)), EPERM);
    expect(Err(::open(m.P("etc/passwd").c_str(), O_WRONLY)), EACCES);
    expect(Err(::mkdir(m.P("etc/new").c_str(), 0755)), EACCES);
    expect(Err(::rename(m.P("mine/x").c_str(), m.P("etc/x").c_str())), EACCES);
    expect(Read(m.P("etc/passwd")) == "root:x:0:0\n" ? 0 : 1, 0);
    // Writing a setuid file one may write clears its setuid and setgid bits.
    expect(Write(m.P("mine/suid"), "#!/bin/sh\n", O_WRONLY | O_CREAT, 0755), 0);
    expect(::chmod(m.P("mine/suid").c_str(), 06755), 0);
    expect(Write(m.P("mine/suid"), "echo\n", O_WRONLY | O_APPEND), 0);
    expect(Lstat(m.P("mine/suid")).st_mode & 07777, 0755);
    expect(Write(m.P("suid/prog"), "x", O_WRONLY | O_APPEND), 0);
    expect(Lstat(m.P("suid/prog")).st_mode & 07777, 0777);
    _exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("the first check that failed, counted from 1 (0: none)");
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(Lstat(m.P("pub/nobody")).st_uid == 65534);
  CHECK(Lstat(m.P("mine/x")).st_uid == 65534);
  CHECK(Read(m.P("ro")) == "r");
}

TEST_CASE("writable: times and link counts follow the changes", "[writable]") {
  TestMount m(BaseImage());
  const struct stat root0 = Lstat(m.P(""));
  CHECK(::mkdir(m.P("d").c_str(), 0755) == 0);
  CHECK(Lstat(m.P("")).st_nlink == root0.st_nlink + 1);
  CHECK(::rmdir(m.P("d").c_str()) == 0);
  CHECK(Lstat(m.P("")).st_nlink == root0.st_nlink);
  // A directory of the image moved into another: both counts change.
  const nlink_t usr = Lstat(m.P("usr")).st_nlink, opt = Lstat(m.P("opt")).st_nlink;
  CHECK(::rename(m.P("usr/lib").c_str(), m.P("opt/lib").c_str()) == 0);
  CHECK(Lstat(m.P("usr")).st_nlink == usr - 1);
  CHECK(Lstat(m.P("opt")).st_nlink == opt + 1);
  // Creating in a directory of the image moves its mtime and ctime forward.
  const struct stat etc0 = Lstat(m.P("etc"));
  CHECK(Write(m.P("etc/new"), "n") == 0);
  const struct stat etc1 = Lstat(m.P("etc"));
  CHECK(etc1.st_mtim.tv_sec >= etc0.st_mtim.tv_sec);
  CHECK((etc1.st_mtim.tv_sec != etc0.st_mtim.tv_sec ||
         etc1.st_mtim.tv_nsec != etc0.st_mtim.tv_nsec));
  // A copy-up is no change of the directory it happens in.
  const struct stat usr0 = Lstat(m.P("usr/bin"));
  const struct stat hl0 = Lstat(m.P("hl"));
  CHECK(::chmod(m.P("usr/bin/tool").c_str(), 0700) == 0);
  CHECK(Write(m.P("hl/orig"), "x", O_WRONLY | O_APPEND) == 0);
  const struct stat usr1 = Lstat(m.P("usr/bin"));
  CHECK(usr1.st_mtim.tv_sec == usr0.st_mtim.tv_sec);
  CHECK(usr1.st_mtim.tv_nsec == usr0.st_mtim.tv_nsec);
  CHECK(Lstat(m.P("hl")).st_mtim.tv_sec == hl0.st_mtim.tv_sec);
  m.Remount();
  CHECK(Lstat(m.P("usr/bin")).st_mtim.tv_sec == usr0.st_mtim.tv_sec);
  CHECK(Lstat(m.P("hl")).st_mtim.tv_sec == hl0.st_mtim.tv_sec);
  // chmod changes ctime, not mtime; a write changes both.
  const struct stat f0 = Lstat(m.P("etc/passwd"));
  ::usleep(10000);
  CHECK(::chmod(m.P("etc/passwd").c_str(), 0600) == 0);
  const struct stat f1 = Lstat(m.P("etc/passwd"));
  CHECK(f1.st_mtim.tv_sec == f0.st_mtim.tv_sec);
  CHECK(f1.st_mtim.tv_nsec == f0.st_mtim.tv_nsec);
  CHECK((f1.st_ctim.tv_sec > f0.st_ctim.tv_sec ||
         (f1.st_ctim.tv_sec == f0.st_ctim.tv_sec && f1.st_ctim.tv_nsec > f0.st_ctim.tv_nsec)));
  CHECK(Write(m.P("etc/passwd"), "w", O_WRONLY | O_APPEND) == 0);
  const struct stat f2 = Lstat(m.P("etc/passwd"));
  CHECK((f2.st_mtim.tv_sec > f1.st_mtim.tv_sec ||
         (f2.st_mtim.tv_sec == f1.st_mtim.tv_sec && f2.st_mtim.tv_nsec > f1.st_mtim.tv_nsec)));
}

}  // namespace layerfs::testing

namespace layerfs::testing {

TEST_CASE("writable: a scratch file system without user xattrs copies content at once",
          "[writable]") {
  if (::geteuid() != 0) return;  // mounting ramfs needs root
  KernelMount ram("ramfs", "");
  REQUIRE(::lsetxattr(ram.path().c_str(), "user.probe", "x", 1, 0) == -1);  // ramfs has none
  TestMount m(BaseImage(), ram.Sub("scratch"));
  CHECK(::chmod(m.P("data/big.bin").c_str(), 0600) == 0);
  CHECK(Lstat(m.Upper("data/big.bin")).st_size == static_cast<off_t>(kBig.size()));
  CHECK(Read(m.P("data/big.bin")) == kBig);
  CHECK(::rename(m.P("usr/lib").c_str(), m.P("lib2").c_str()) == 0);
  CHECK(Read(m.P("lib2/sub/b.so")) == "B");
  CHECK(Write(m.P("etc/passwd"), "x\n", O_WRONLY | O_APPEND) == 0);
  // Deleted while open, then written: the copy without a name.
  int fd = ::open(m.P("etc/hostname").c_str(), O_RDWR | O_APPEND);
  REQUIRE(fd >= 0);
  CHECK(::unlink(m.P("etc/hostname").c_str()) == 0);
  CHECK(::write(fd, "more\n", 5) == 5);
  char buf[16] = {};
  CHECK(::pread(fd, buf, sizeof(buf), 0) == 9);
  CHECK(std::string(buf, 9) == "top\nmore\n");
  ::close(fd);
  m.Remount();
  CHECK((Lstat(m.P("data/big.bin")).st_mode & 07777) == 0600);
  CHECK(Read(m.P("data/big.bin")) == kBig);
  CHECK(Read(m.P("lib2/a.so")) == "A");
  CHECK(!Exists(m.P("usr/lib")));
  CHECK(Read(m.P("etc/passwd")) == "root:x:0:0\nx\n");
  CHECK(!Exists(m.P("etc/hostname")));
}

}  // namespace layerfs::testing

namespace layerfs::testing {

TEST_CASE("writable: owners kept as overrides (owners=xattr) show and commit as set",
          "[writable]") {
  TestMount m(BaseImage(), {}, {"-o", "owners=xattr"});
  // A copy-up keeps the image's owner and mode, whatever the scratch file's own are.
  CHECK(::chmod(m.P("owned/file").c_str(), 0604) == 0);
  struct stat st = Lstat(m.P("owned/file"));
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 1000);
  CHECK((st.st_mode & 07777) == 0604);
  CHECK(Lstat(m.P("owned")).st_uid == 0);
  CHECK(GetXattr(m.Upper("owned/file"), "user.layerfs.override") == "1000:1000:100604:0:0");
  // chown, modes the daemon could not use itself, devices.
  CHECK(Write(m.P("f"), "x") == 0);
  CHECK(::chown(m.P("f").c_str(), 123, 456) == 0);
  CHECK(::chmod(m.P("f").c_str(), 0) == 0);
  CHECK(::mkdir(m.P("d").c_str(), 0) == 0);
  CHECK(Write(m.P("d/inside"), "i") == 0);  // root passes mode 0; the daemon still gets in
  CHECK(::mknod(m.P("null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
  CHECK(::mkfifo(m.P("fifo").c_str(), 0620) == 0);
  st = Lstat(m.P("f"));
  CHECK(st.st_uid == 123);
  CHECK(st.st_gid == 456);
  CHECK((st.st_mode & 07777) == 0);
  CHECK(S_ISCHR(Lstat(m.P("null")).st_mode));
  CHECK(Lstat(m.P("null")).st_rdev == makedev(1, 3));
  CHECK(S_ISREG(Lstat(m.Upper("null")).st_mode));  // kept as a file
  CHECK(S_ISFIFO(Lstat(m.P("fifo")).st_mode));
  const mode_t mask = ::umask(0);
  ::umask(mask);
  CHECK((Lstat(m.P("fifo")).st_mode & 07777) == (0620 & ~mask));
  CHECK(Lstat(m.Upper("f")).st_uid == 0);  // the scratch file itself is the daemon's
  m.Remount();
  st = Lstat(m.P("f"));
  CHECK(st.st_uid == 123);
  CHECK((st.st_mode & 07777) == 0);
  CHECK(Lstat(m.P("owned/file")).st_uid == 1000);
  CHECK(S_ISCHR(Lstat(m.P("null")).st_mode));
  CHECK(Read(m.P("d/inside")) == "i");
  // The committed layer carries the owners, modes and devices shown.
  m.Unmount();
  TempDir out;
  std::string cmd = ShellQuote(LayerfsBinary()) + " -q commit " + ShellQuote(m.scratch()) + " " +
                    ShellQuote(m.image_dir() + "/manifest.json") + " " + ShellQuote(out.Sub("img")) +
                    " --cache " + ShellQuote(m.image_dir() + "/../cache");
  REQUIRE(RunShell(cmd) == 0);
  ::mkdir(out.Sub("mnt").c_str(), 0755);
  REQUIRE(RunShell(ShellQuote(LayerfsBinary()) + " mount --read-only " +
                   ShellQuote(out.Sub("img")) + " " + ShellQuote(out.Sub("mnt")) + " --cache " +
                   ShellQuote(out.Sub("cache"))) == 0);
  st = Lstat(out.Sub("mnt/f"));
  CHECK(st.st_uid == 123);
  CHECK(st.st_gid == 456);
  CHECK((st.st_mode & 07777) == 0);
  CHECK(S_ISCHR(Lstat(out.Sub("mnt/null")).st_mode));
  CHECK(Lstat(out.Sub("mnt/null")).st_rdev == makedev(1, 3));
  CHECK(S_ISFIFO(Lstat(out.Sub("mnt/fifo")).st_mode));
  CHECK(Lstat(out.Sub("mnt/owned/file")).st_uid == 1000);
  CHECK((Lstat(out.Sub("mnt/owned/file")).st_mode & 07777) == 0604);
  CHECK((Lstat(out.Sub("mnt/d")).st_mode & 07777) == 0);
  RunShell("fusermount3 -u " + ShellQuote(out.Sub("mnt")));
}

}  // namespace layerfs::testing
