// ScratchDir without a mount: its layout, which directories it adopts or refuses, its lock, and
// the owner overrides it records.
#include "scratch/scratch_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

const std::vector<std::string> kLayers = {"sha256:aaaa", "sha256:bbbb"};

bool IsDir(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

TEST_CASE("scratch: a new directory gets its layout and description", "[scratch]") {
  testing::TempDir dir;
  const std::string path = dir.Sub("s");
  {
    auto s = ScratchDir::Open(path, kLayers);
    REQUIRE(s.ok());
    CHECK(s->fresh());
    CHECK(IsDir(path + "/upper"));
    CHECK(IsDir(path + "/work"));
    CHECK(testing::ReadFile(path + "/layerfs-scratch.json").find("sha256:bbbb") !=
          std::string::npos);
    testing::WriteFile(path + "/upper/kept", "change");
    testing::WriteFile(path + "/work/leftover", "a copy-up a crash interrupted");
  }
  // Opened again for the same image: the changes stay, work/ is emptied.
  auto again = ScratchDir::Open(path, kLayers, /*create=*/false);
  REQUIRE(again.ok());
  CHECK_FALSE(again->fresh());
  CHECK(testing::ReadFile(path + "/upper/kept") == "change");
  CHECK(::access((path + "/work/leftover").c_str(), F_OK) != 0);
}

TEST_CASE("scratch: one mount at a time", "[scratch]") {
  testing::TempDir dir;
  auto first = ScratchDir::Open(dir.Sub("s"), kLayers);
  REQUIRE(first.ok());
  auto second = ScratchDir::Open(dir.Sub("s"), kLayers);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == EBUSY);
  CHECK_THAT(second.status().message(), Catch::Contains("in use by another"));
}

TEST_CASE("scratch: what is not its own is refused and left as it is", "[scratch]") {
  testing::TempDir dir;
  {
    auto s = ScratchDir::Open(dir.Sub("other-image"), kLayers);
    REQUIRE(s.ok());
  }
  auto other = ScratchDir::Open(dir.Sub("other-image"), {"sha256:cccc"});
  REQUIRE_FALSE(other.ok());
  CHECK_THAT(other.status().message(), Catch::Contains("changes to another image"));

  const std::string home = dir.Sub("home");
  REQUIRE(::mkdir(home.c_str(), 0755) == 0);
  testing::WriteFile(home + "/thesis.tex", "years of work");
  auto adopted = ScratchDir::Open(home, kLayers);
  REQUIRE_FALSE(adopted.ok());
  CHECK_THAT(adopted.status().message(),
             Catch::Contains("not a layerfs scratch directory and not empty") &&
                 Catch::Contains("thesis.tex"));
  CHECK(testing::ReadFile(home + "/thesis.tex") == "years of work");
  CHECK(::access((home + "/lock").c_str(), F_OK) != 0);
  CHECK(::access((home + "/upper").c_str(), F_OK) != 0);

  const std::string plain = dir.Sub("plain");
  REQUIRE(::mkdir(plain.c_str(), 0755) == 0);
  auto not_made = ScratchDir::Open(plain, kLayers, /*create=*/false);
  REQUIRE_FALSE(not_made.ok());
  CHECK(not_made.status().code() == ENOENT);

  REQUIRE(::mkdir(dir.Sub("bad").c_str(), 0755) == 0);
  testing::WriteFile(dir.Sub("bad/layerfs-scratch.json"), "{\"format\": 99}");
  auto future = ScratchDir::Open(dir.Sub("bad"), kLayers);
  REQUIRE_FALSE(future.ok());
  CHECK_THAT(future.status().message(), Catch::Contains("scratch format 99"));
}

TEST_CASE("scratch: an ephemeral directory goes with its object", "[scratch]") {
  std::string path;
  {
    auto s = ScratchDir::CreateEphemeral(kLayers);
    REQUIRE(s.ok());
    path = s->path();
    testing::WriteFile(path + "/upper/file", "x");
    REQUIRE(::mkdir((path + "/upper/dir").c_str(), 0755) == 0);
    testing::WriteFile(path + "/upper/dir/nested", "y");
  }
  CHECK(::access(path.c_str(), F_OK) != 0);
}

TEST_CASE("scratch: RemoveContents empties a tree, keeping the directory", "[scratch]") {
  testing::TempDir dir;
  const std::string root = dir.Sub("r");
  REQUIRE(::mkdir(root.c_str(), 0755) == 0);
  REQUIRE(::mkdir((root + "/a").c_str(), 0755) == 0);
  REQUIRE(::mkdir((root + "/a/b").c_str(), 0500) == 0);  // not writable: emptied all the same
  testing::WriteFile(root + "/a/file", "1");
  REQUIRE(::symlink("/etc/passwd", (root + "/link").c_str()) == 0);
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(RemoveContents(fd.get(), root).ok());
  CHECK(IsDir(root));
  std::vector<std::string> left;
  REQUIRE(ListNames(fd.get(), &left) == 0);
  CHECK(left.empty());
  CHECK(::access("/etc/passwd", F_OK) == 0);  // a symlink is removed, never followed
}

TEST_CASE("scratch: overrides encode owner, mode and device, and reject the rest", "[scratch]") {
  Override o;
  o.uid = 1000;
  o.gid = 100;
  o.mode = S_IFCHR | 0620;
  o.rdev = makedev(136, 3);
  Override back;
  REQUIRE(Override::Decode(o.Encode(), &back));
  CHECK(back.uid == 1000);
  CHECK(back.gid == 100);
  CHECK(back.mode == (S_IFCHR | 0620));
  CHECK(back.rdev == makedev(136, 3));
  for (const char* bad : {"", "1:2", "a:b:c:d:e", "1:2:777777777:0:0", "1:2:100644:0:0:9"}) {
    INFO(bad);
    CHECK_FALSE(Override::Decode(bad, &back));
  }
}

}  // namespace
}  // namespace layerfs
