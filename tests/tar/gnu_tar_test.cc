// Tars written by GNU tar itself, for the features libarchive's writer cannot produce (sparse
// files in each of GNU tar's encodings) and as a check against a real tar of a real tree.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "index/layer_data.h"
#include "tests/util/layer_checks.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::EntryAt;

using testing::RandomBytes;
using testing::ShellQuote;
using testing::TempDir;
using testing::UstarHeader;

constexpr uint64_t kGiB = uint64_t{1} << 30;

// A file with holes: `size` bytes, of which only `runs` (offset, bytes) are written.
struct SparseSpec {
  std::string name;
  uint64_t size = 0;
  std::vector<std::pair<uint64_t, std::string>> runs;

  void Create(const std::string& dir) const {
    std::string path = dir + "/" + name;
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(fd.valid());
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
    for (const auto& [offset, data] : runs) {
      REQUIRE(::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(offset)) ==
              static_cast<ssize_t>(data.size()));
    }
  }

  // The logical content (only for files small enough to hold in memory).
  std::string Expected() const {
    std::string out(size, '\0');
    for (const auto& [offset, data] : runs) out.replace(offset, data.size(), data);
    return out;
  }
};

// Many runs (more than fit in one old-GNU header and its first extension block), data at an
// unaligned offset, and data in the very last bytes.
SparseSpec ManyRuns() {
  SparseSpec s;
  s.name = "many-runs";
  s.size = 31 * 65536 + 12345;
  s.runs.emplace_back(0, RandomBytes(5000, 1));
  for (uint32_t k = 1; k <= 30; ++k) s.runs.emplace_back(k * 65536 + 100, RandomBytes(3000, k));
  s.runs.emplace_back(s.size - 10, RandomBytes(10, 99));
  return s;
}

// Data at the start, then a hole up to the end of the file.
SparseSpec TailHole() {
  SparseSpec s;
  s.name = "tail-hole";
  s.size = 1 << 20;
  s.runs.emplace_back(0, RandomBytes(100, 7));
  return s;
}

// A hole first, data in the middle.
SparseSpec HeadHole() {
  SparseSpec s;
  s.name = "head-hole";
  s.size = 3 << 20;
  s.runs.emplace_back(2 << 20, RandomBytes(70000, 8));
  return s;
}

std::string TarCommand(const std::string& dir, const std::string& out, const std::string& flags,
                       const std::string& members) {
  return "tar -C " + ShellQuote(dir) + " " + flags + " -cf " + ShellQuote(out) + " " + members +
         " 2>&1";
}

Layer TarAndIndex(const std::string& dir, const std::string& out, const std::string& flags,
                  const std::string& members) {
  std::string command = TarCommand(dir, out, flags, members);
  INFO(command);
  REQUIRE(testing::RunShell(command) == 0);
  auto layer = testing::IndexTarFile(out);
  INFO(layer.status().message());
  REQUIRE(layer.ok());
  return std::move(layer).value();
}

std::string ReadRange(const Layer& layer, const IndexEntry& e, uint64_t offset, size_t size) {
  std::string buf(size, '\x55');
  auto n = ReadEntry(layer, e, offset, buf.data(), size);
  INFO(n.status().message());
  REQUIRE(n.ok());
  buf.resize(*n);
  return buf;
}

void CheckSparseFile(const Layer& layer, const SparseSpec& spec) {
  INFO(spec.name);
  const IndexEntry& e = EntryAt(layer, spec.name);
  REQUIRE(e.type == static_cast<uint8_t>(EntryType::kRegular));
  CHECK(e.size == spec.size);
  const std::string expected = spec.Expected();
  // Whole file at once, then in odd-sized pieces that start inside holes and runs.
  auto whole = testing::ReadPath(layer, spec.name, spec.size);
  REQUIRE(whole.ok());
  CHECK((*whole == expected));
  auto pieces = testing::ReadPath(layer, spec.name, 777);
  REQUIRE(pieces.ok());
  CHECK((*pieces == expected));
  // Binary content: compared without Catch printing it.
  CHECK((ReadRange(layer, e, spec.size - 7, 100) == expected.substr(spec.size - 7)));
  CHECK(ReadRange(layer, e, spec.size, 100).empty());
}

// Writes the sparse files into a fresh directory, archives them with `flags` and checks every
// byte read back through the index.
void CheckSparseFormat(const std::string& flags) {
  TempDir dir;
  std::string src = dir.Sub("src");
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  const std::vector<SparseSpec> specs = {ManyRuns(), TailHole(), HeadHole()};
  for (const SparseSpec& s : specs) s.Create(src);
  testing::WriteFile(src + "/dense", "no holes here");

  Layer layer = TarAndIndex(src, dir.Sub("out.tar"), flags, "many-runs tail-hole head-hole dense");
  // Only the four files: no GNUSparseFile.* directory from the PAX encodings.
  CHECK(layer.index.child_count(layer.index.entry(kRootEntry)) == 4);
  for (const SparseSpec& s : specs) CheckSparseFile(layer, s);
  const IndexEntry& many = EntryAt(layer, "many-runs");
  CHECK((many.flags & kFlagSparse) != 0);
  CHECK(layer.index.sparse_run_count(many) >= 30);
  CHECK(testing::ReadPath(layer, "dense").value() == "no holes here");
}

TEST_CASE("GNU tar sparse files, --format=gnu (old GNU sparse headers)", "[tar]") {
  CheckSparseFormat("--format=gnu --sparse");
}

TEST_CASE("GNU tar sparse files, --format=pax --sparse-version=0.0", "[tar]") {
  CheckSparseFormat("--format=pax --sparse --sparse-version=0.0");
}

TEST_CASE("GNU tar sparse files, --format=pax --sparse-version=0.1", "[tar]") {
  CheckSparseFormat("--format=pax --sparse --sparse-version=0.1");
}

TEST_CASE("GNU tar sparse files, --format=pax --sparse-version=1.0", "[tar]") {
  CheckSparseFormat("--format=pax --sparse --sparse-version=1.0");
}

TEST_CASE("GNU tar sparse files that are all hole read back as zeros", "[tar]") {
  // GNU tar stores a file without data as a sparse map holding one empty run at its end: still a
  // sparse file, not `size` bytes of whatever follows its header.
  const std::string flags = GENERATE(
      as<std::string>{}, "--format=gnu --sparse", "--format=pax --sparse --sparse-version=0.0",
      "--format=pax --sparse --sparse-version=0.1", "--format=pax --sparse --sparse-version=1.0");
  INFO(flags);
  const uint64_t size = GENERATE(uint64_t{8192}, uint64_t{5} << 20);
  INFO("size " << size);
  TempDir dir;
  SparseSpec hole;
  hole.name = "all-hole";
  hole.size = size;
  hole.Create(dir.path());
  const std::string next = RandomBytes(30000, 41);
  testing::WriteFile(dir.Sub("next"), next);
  Layer layer = TarAndIndex(dir.path(), dir.Sub("out.tar"), flags, "all-hole next");
  CheckSparseFile(layer, hole);
  CHECK((testing::ReadPath(layer, "next").value() == next));
}

// A 9 GiB file with data at its start, across the 8 GiB line and in its last bytes.
SparseSpec NineGiB() {
  SparseSpec s;
  s.name = "huge";
  s.size = 9 * kGiB + 4096 * 3;
  s.runs.emplace_back(0, RandomBytes(4096, 11));
  s.runs.emplace_back(8 * kGiB - 2048, RandomBytes(4096, 12));
  s.runs.emplace_back(s.size - 4096, RandomBytes(4096, 13));
  return s;
}

void CheckNineGiB(const std::string& flags) {
  TempDir dir;
  const SparseSpec spec = NineGiB();
  spec.Create(dir.path());
  Layer layer = TarAndIndex(dir.path(), dir.Sub("out.tar"), flags, "huge");
  const IndexEntry& e = EntryAt(layer, "huge");
  REQUIRE(e.type == static_cast<uint8_t>(EntryType::kRegular));
  CHECK(e.size == spec.size);
  CHECK((e.flags & kFlagSparse) != 0);
  CHECK((ReadRange(layer, e, 0, 4096) == spec.runs[0].second));
  CHECK((ReadRange(layer, e, 8 * kGiB - 2048, 4096) == spec.runs[1].second));
  CHECK((ReadRange(layer, e, spec.size - 4096, 8192) == spec.runs[2].second));
  CHECK((ReadRange(layer, e, spec.size - 1, 1) == spec.runs[2].second.substr(4095)));
  CHECK(ReadRange(layer, e, 5 * kGiB, 4096) == std::string(4096, '\0'));
  CHECK(ReadRange(layer, e, spec.size - 4096 - 10, 20) ==
        std::string(10, '\0') + spec.runs[2].second.substr(0, 10));
}

TEST_CASE("GNU tar: a sparse 9 GiB file in --format=gnu keeps its size and its last bytes",
          "[tar]") {
  CheckNineGiB("--format=gnu --sparse");
}

TEST_CASE("GNU tar: a sparse 9 GiB file in --format=pax keeps its size and its last bytes",
          "[tar]") {
  CheckNineGiB("--format=pax --sparse --sparse-version=0.1");
}

// The lstat of a file, and what the index says of it, must agree.
void CheckAgainstDisk(const Layer& layer, const std::string& root, const std::string& path,
                      bool nanoseconds) {
  INFO(path);
  struct stat st;
  REQUIRE(::lstat((root + "/" + path).c_str(), &st) == 0);
  const IndexEntry& e = EntryAt(layer, path);
  CHECK(e.mode == (st.st_mode & 07777));
  CHECK(e.uid == st.st_uid);
  CHECK(e.gid == st.st_gid);
  CHECK(e.mtime_sec == st.st_mtim.tv_sec);
  if (nanoseconds) CHECK(e.mtime_nsec == st.st_mtim.tv_nsec);
  if (S_ISREG(st.st_mode) && e.type == static_cast<uint8_t>(EntryType::kRegular)) {
    CHECK(e.size == static_cast<uint64_t>(st.st_size));
    CHECK(testing::ReadPath(layer, path).value() == testing::ReadFile(root + "/" + path));
  } else if (S_ISLNK(st.st_mode)) {
    REQUIRE(e.type == static_cast<uint8_t>(EntryType::kSymlink));
    char target[4096];
    ssize_t n = ::readlink((root + "/" + path).c_str(), target, sizeof(target));
    REQUIRE(n > 0);
    CHECK(layer.index.link_target(e) == std::string_view(target, static_cast<size_t>(n)));
  } else if (S_ISDIR(st.st_mode)) {
    CHECK(e.type == static_cast<uint8_t>(EntryType::kDirectory));
  } else if (S_ISFIFO(st.st_mode)) {
    CHECK(e.type == static_cast<uint8_t>(EntryType::kFifo));
  } else if (S_ISCHR(st.st_mode)) {
    REQUIRE(e.type == static_cast<uint8_t>(EntryType::kCharDevice));
    CHECK(e.data == st.st_rdev);
  }
}

void CheckRealTree(const std::string& flags, bool nanoseconds) {
  TempDir dir;
  const std::string root = dir.Sub("root");
  const std::string long_dir = std::string(120, 'D') + "/" + std::string(200, 'E');
  const std::string long_file = long_dir + "/" + std::string(250, 'F');
  REQUIRE(testing::RunShell("mkdir -p " + ShellQuote(root + "/etc") + " " +
                            ShellQuote(root + "/" + long_dir) + " " +
                            ShellQuote(root + "/usr/bin")) == 0);
  testing::WriteFile(root + "/etc/hostname", "layerfs\n");
  testing::WriteFile(root + "/usr/bin/tool", RandomBytes(10000, 21));
  testing::WriteFile(root + "/" + long_file, "deep");
  testing::WriteFile(root + "/with space\nand newline \xc3\xa9", "odd");
  REQUIRE(::link((root + "/usr/bin/tool").c_str(), (root + "/usr/bin/tool-alias").c_str()) == 0);
  REQUIRE(::symlink(("../../" + long_file).c_str(), (root + "/usr/bin/deep-link").c_str()) == 0);
  REQUIRE(::mkfifo((root + "/etc/fifo").c_str(), 0640) == 0);
  REQUIRE(::chmod((root + "/usr/bin/tool").c_str(), 04755) == 0);
  REQUIRE(::chmod((root + "/etc").c_str(), 02750) == 0);
  // Owners and device nodes need root; the tests normally run as root.
  const bool root_user = ::geteuid() == 0;
  if (root_user) {
    REQUIRE(::chown((root + "/etc/hostname").c_str(), 1234, 5678) == 0);
    REQUIRE(::mknod((root + "/etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
  }
  struct timespec times[2] = {{0, UTIME_OMIT}, {1600000000, 123456789}};
  REQUIRE(::utimensat(AT_FDCWD, (root + "/etc/hostname").c_str(), times, 0) == 0);

  Layer layer = TarAndIndex(root, dir.Sub("out.tar"), flags, ".");
  for (const std::string& path :
       {std::string("etc/hostname"), std::string("usr/bin/tool"), long_file,
        std::string("with space\nand newline \xc3\xa9"), std::string("usr/bin/deep-link"),
        std::string("etc/fifo"), std::string("usr/bin"), long_dir}) {
    CheckAgainstDisk(layer, root, path, nanoseconds);
  }
  if (root_user) CheckAgainstDisk(layer, root, "etc/null", nanoseconds);
  // GNU tar stores the directory mode after its contents; etc keeps setgid.
  CheckAgainstDisk(layer, root, "etc", false);
  // The second name of the hard-linked file is a link to the entry of the first.
  const IndexEntry& alias = EntryAt(layer, "usr/bin/tool-alias");
  uint32_t tool = layer.index.FindPath("usr/bin/tool");
  const IndexEntry& first = layer.index.entry(tool);
  if (alias.type == static_cast<uint8_t>(EntryType::kHardlink)) {
    CHECK(alias.data == tool);
  } else {
    // GNU tar archived tool-alias first (directory order): then tool links to it.
    REQUIRE(first.type == static_cast<uint8_t>(EntryType::kHardlink));
    CHECK(first.data == layer.index.FindPath("usr/bin/tool-alias"));
  }
}

TEST_CASE("GNU tar --format=gnu of a real tree matches the files on disk", "[tar]") {
  CheckRealTree("--format=gnu", false);
}

TEST_CASE("GNU tar --format=pax of a real tree matches the files on disk, with nanoseconds",
          "[tar]") {
  CheckRealTree("--format=pax", true);
}

TEST_CASE("GNU tar --xattrs records (SCHILY.xattr) are read with binary values", "[tar]") {
  TempDir dir;
  const std::string file = dir.Sub("ping");
  testing::WriteFile(file, "ELF");
  const std::string capability(
      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00",
      20);
  REQUIRE(::setxattr(file.c_str(), "user.note", "a note", 6, 0) == 0);
  // Setting security.capability needs CAP_SETFCAP; the tests normally run as root.
  const bool root_user = ::geteuid() == 0;
  if (root_user) {
    REQUIRE(::setxattr(file.c_str(), "security.capability", capability.data(), capability.size(),
                       0) == 0);
  }
  Layer layer = TarAndIndex(dir.path(), dir.Sub("out.tar"),
                            "--format=pax --xattrs --xattrs-include='*'", "ping");
  const IndexEntry& e = EntryAt(layer, "ping");
  std::map<std::string, std::string> got;
  for (uint16_t k = 0; k < layer.index.xattr_count(e); ++k) {
    got[std::string(layer.index.xattr_name(e, k))] = std::string(layer.index.xattr_value(e, k));
  }
  CHECK(got.size() == (root_user ? 2u : 1u));
  CHECK(got["user.note"] == "a note");
  if (root_user) CHECK(got["security.capability"] == capability);
}

// --- A regular (not sparse) file over 8 GiB, whose size only a PAX record can hold -----------

std::string PaxRecord(const std::string& key, const std::string& value) {
  std::string body = " " + key + "=" + value + "\n";
  size_t len = body.size() + 1;
  while (std::to_string(len).size() + body.size() != len) ++len;
  return std::to_string(len) + body;
}

TEST_CASE("tar: a regular file over 8 GiB with a PAX size record keeps its size and its end",
          "[tar][slow]") {
  TempDir dir;
  const uint64_t size = 9 * kGiB + 1000;
  const std::string records =
      PaxRecord("size", std::to_string(size)) + PaxRecord("path", "big/regular.bin");
  std::string head = UstarHeader("PaxHeaders/regular.bin", 'x', records.size()) + records;
  head.resize((head.size() + 511) / 512 * 512, '\0');
  // The ustar size field cannot hold the size: the PAX record is what gives it.
  head += UstarHeader("regular.bin", '0', 0);
  const uint64_t data_start = head.size();
  const std::string tail = RandomBytes(1000, 31);
  const uint64_t end = data_start + (size + 511) / 512 * 512;
  const std::string path = dir.Sub("big.tar");
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(fd.valid());
    REQUIRE(::pwrite(fd.get(), head.data(), head.size(), 0) == static_cast<ssize_t>(head.size()));
    // The file's data is a hole on disk apart from its last bytes.
    REQUIRE(::pwrite(fd.get(), tail.data(), tail.size(),
                     static_cast<off_t>(data_start + size - tail.size())) ==
            static_cast<ssize_t>(tail.size()));
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(end + 1024)) == 0);
  }
  auto layer = testing::IndexTarFile(path);
  INFO(layer.status().message());
  REQUIRE(layer.ok());
  const IndexEntry& e = EntryAt(*layer, "big/regular.bin");
  CHECK(e.size == size);
  CHECK((e.flags & kFlagSparse) == 0);
  CHECK(e.data == data_start);
  CHECK((ReadRange(*layer, e, size - 1000, 4096) == tail));
  CHECK(ReadRange(*layer, e, 8 * kGiB, 16) == std::string(16, '\0'));
}

}  // namespace
}  // namespace layerfs
