#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TempDir;
using testing::WriteFile;

// An image directory with symlinks that stay inside and symlinks that lead out.
struct Tree {
  TempDir tmp;
  std::string root = tmp.Sub("image");
  UniqueFd dir;

  Tree() {
    WriteFile(tmp.Sub("outside"), "outside");
    WriteFile(root + "/a/b/file", "file");
    WriteFile(root + "/blobs/sha256/x", "blob");
    REQUIRE(::symlink("b/file", (root + "/a/rel").c_str()) == 0);
    REQUIRE(::symlink("../blobs/sha256/x", (root + "/a/up-inside").c_str()) == 0);
    REQUIRE(::symlink("../../outside", (root + "/a/up-outside").c_str()) == 0);
    REQUIRE(::symlink((tmp.Sub("outside")).c_str(), (root + "/abs").c_str()) == 0);
    REQUIRE(::symlink("a", (root + "/dirlink").c_str()) == 0);
    REQUIRE(::symlink("loop2", (root + "/loop1").c_str()) == 0);
    REQUIRE(::symlink("loop1", (root + "/loop2").c_str()) == 0);
    dir.reset(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(dir.valid());
  }
};

std::string ReadFd(int fd) {
  char buf[64];
  ssize_t n = ::pread(fd, buf, sizeof(buf), 0);
  return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
}

TEST_CASE("OpenBeneath stays inside the directory, with openat2 and by hand", "[base]") {
  Tree t;
  auto open_fn = GENERATE(as<int (*)(int, const std::string&, int)>{}, OpenBeneath,
                          OpenBeneathByHand);
  auto open = [&](const std::string& path) { return UniqueFd(open_fn(t.dir.get(), path, O_RDONLY)); };
  auto refused = [&](const std::string& path, int err) {
    INFO(path);
    errno = 0;
    UniqueFd fd(open_fn(t.dir.get(), path, O_RDONLY));
    CHECK_FALSE(fd.valid());
    CHECK(errno == err);
  };

  CHECK(ReadFd(open("a/b/file").get()) == "file");
  CHECK(ReadFd(open("a/rel").get()) == "file");            // symlink inside
  CHECK(ReadFd(open("a/up-inside").get()) == "blob");      // "../" that stays inside
  CHECK(ReadFd(open("dirlink/b/file").get()) == "file");   // symlink to a directory
  CHECK(ReadFd(open("a/../a/b/./file").get()) == "file");  // ".." within
  refused("a/up-outside", EXDEV);
  refused("abs", EXDEV);
  refused("../outside", EXDEV);
  refused("a/../../outside", EXDEV);
  refused("/etc/passwd", EXDEV);
  refused("loop1", ELOOP);
  refused("a/missing", ENOENT);
}

}  // namespace
}  // namespace layerfs
