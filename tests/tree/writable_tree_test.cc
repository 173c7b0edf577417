// WritableTree without a mount: the namespace a writable mount serves, over an image indexed in
// memory and a scratch directory on disk, checked through the calls the FUSE operations make.
#include "tree/writable_tree.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "index/layer_data.h"
#include "tests/util/indexed_image.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TarWriter;
using Ino = WritableTree::Ino;
constexpr Ino kRoot = 1;

std::string ManyFiles(const std::string& dir, int n) {
  TarWriter w;
  w.Dir(dir);
  for (int i = 0; i < n; ++i) w.File(dir + "/image-" + std::to_string(i), "x");
  return w.Finish();
}

class Fixture : public testing::IndexedImage {
 public:
  explicit Fixture(const std::vector<std::string>& tars) : IndexedImage(tars) {
    std::vector<std::string> ids;
    for (const Layer& l : layers_) ids.push_back(l.index.diff_id().str());
    auto scratch = ScratchDir::CreateEphemeral(ids);
    REQUIRE(scratch.ok());
    writable_ = std::make_unique<WritableTree>(tree_, std::move(*scratch), /*native_owners=*/false);
    REQUIRE(writable_->Load().ok());
  }

  WritableTree& w() { return *writable_; }

  Ino Lookup(Ino parent, const std::string& name) {
    struct stat st;
    int err = w().Lookup(parent, name, &st);
    INFO(name);
    REQUIRE(err == 0);
    return st.st_ino;
  }

  Ino Create(Ino parent, const std::string& name) {
    struct stat st;
    REQUIRE(w().Create(parent, name, S_IFREG | 0644, {}, &st) == 0);
    return st.st_ino;
  }

  // The names of a whole listing of `dir`, read `batch` entries at a time from the offsets the
  // tree hands out, calling `between` after each batch (which may change the directory).
  std::vector<std::string> List(
      Ino dir, size_t batch = 1000, const std::function<void()>& between = [] {}) {
    std::vector<std::string> names;
    uint64_t offset = 0;
    for (;;) {
      std::vector<WritableTree::DirItem> items;
      REQUIRE(w().ReadDir(dir, offset, batch, &items) == 0);
      if (items.empty()) return names;
      for (const auto& item : items) {
        CHECK(item.next > offset);
        offset = item.next;
        if (item.name != "." && item.name != "..") names.push_back(item.name);
      }
      between();
    }
  }

 private:
  std::unique_ptr<WritableTree> writable_;
};

std::set<std::string> AsSet(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

TEST_CASE("writable tree: a listing merges the image and the scratch dir, each name once",
          "[tree]") {
  Fixture f({TarWriter().Dir("d").File("d/a", "1").File("d/b", "2").File("d/c", "3").Finish()});
  const Ino d = f.Lookup(kRoot, "d");
  REQUIRE(f.w().Unlink(d, "b") == 0);
  f.Create(d, "new");
  // A copied-up image file stays where the image lists it.
  struct stat st = {};
  st.st_mode = 0600;
  REQUIRE(f.w().SetAttr(f.Lookup(d, "c"), st, WritableTree::kSetMode, &st) == 0);
  CHECK(f.List(d) == std::vector<std::string>{"a", "c", "new"});
  // Created again after its removal, a name of the image is listed where the image has it.
  f.Create(d, "b");
  CHECK(f.List(d) == std::vector<std::string>{"a", "b", "c", "new"});
}

TEST_CASE("writable tree: removing what was listed skips and repeats nothing", "[tree]") {
  Fixture f({ManyFiles("d", 300)});
  const Ino d = f.Lookup(kRoot, "d");
  for (int i = 0; i < 300; ++i) f.Create(d, "made-" + std::to_string(i));
  // As `rm -r` does: list a batch, remove it, go on from the offset reached.
  std::vector<std::string> seen;
  uint64_t offset = 0;
  for (;;) {
    std::vector<WritableTree::DirItem> items;
    REQUIRE(f.w().ReadDir(d, offset, 37, &items) == 0);
    if (items.empty()) break;
    for (const auto& item : items) {
      offset = item.next;
      if (item.name == "." || item.name == "..") continue;
      seen.push_back(item.name);
      REQUIRE(f.w().Unlink(d, item.name) == 0);
    }
  }
  CHECK(seen.size() == 600);
  CHECK(AsSet(seen).size() == 600);
  CHECK(f.List(d).empty());
  CHECK(f.w().Rmdir(kRoot, "d") == 0);
}

TEST_CASE("writable tree: a name made during a listing is listed after the names before it",
          "[tree]") {
  Fixture f({ManyFiles("d", 50)});
  const Ino d = f.Lookup(kRoot, "d");
  int made = 0;
  auto names = f.List(d, 10, [&] {
    if (made < 3) f.Create(d, "during-" + std::to_string(made++));
  });
  REQUIRE(names.size() == 53);
  CHECK(AsSet(names).size() == 53);
  CHECK(names[50] == "during-0");
  CHECK(names[52] == "during-2");
  // "." and ".." come first, once.
  std::vector<WritableTree::DirItem> items;
  REQUIRE(f.w().ReadDir(d, 0, 3, &items) == 0);
  REQUIRE(items.size() == 3);
  CHECK(items[0].name == ".");
  CHECK(items[1].name == "..");
  CHECK(items[2].name == "image-0");
}

TEST_CASE("writable tree: a renamed image directory lists its whole content", "[tree]") {
  Fixture f({TarWriter().Dir("d").Dir("d/sub").File("d/sub/x", "1").File("d/y", "2").Finish()});
  const Ino d = f.Lookup(kRoot, "d");
  REQUIRE(f.w().Rename(kRoot, "d", kRoot, "moved", 0) == 0);
  CHECK(f.List(kRoot) == std::vector<std::string>{"moved"});
  const Ino moved = f.Lookup(kRoot, "moved");
  CHECK(moved == d);  // the inode keeps its number
  CHECK(AsSet(f.List(moved)) == std::set<std::string>{"sub", "y"});
  CHECK(f.List(f.Lookup(moved, "sub")) == std::vector<std::string>{"x"});
  struct stat st;
  CHECK(f.w().Lookup(kRoot, "d", &st) == ENOENT);
}

TEST_CASE("writable tree: listing what is not a directory, or is gone", "[tree]") {
  Fixture f({TarWriter().File("file", "1").Dir("d").Finish()});
  std::vector<WritableTree::DirItem> items;
  CHECK(f.w().ReadDir(f.Lookup(kRoot, "file"), 0, 10, &items) == ENOTDIR);
  const Ino d = f.Lookup(kRoot, "d");
  REQUIRE(f.w().Rmdir(kRoot, "d") == 0);
  CHECK(f.w().ReadDir(d, 0, 10, &items) == ENOENT);
  CHECK(items.empty());
}

TEST_CASE("writable tree: a write copies an image file up, keeping its content", "[tree]") {
  const std::string content = testing::RandomBytes(200000, 4);
  Fixture f({TarWriter().File("f", content).Finish()});
  const Ino ino = f.Lookup(kRoot, "f");
  size_t written = 0;
  REQUIRE(f.w().Write(ino, "HEAD", 4, 0, &written) == 0);
  CHECK(written == 4);
  WritableTree::ReadSource src;
  REQUIRE(f.w().ReadFrom(ino, &src) == 0);
  REQUIRE(src.fd);
  std::string got(content.size() + 10, '\0');
  const ssize_t n = ::pread(src.fd.get(), got.data(), got.size(), 0);
  REQUIRE(n == static_cast<ssize_t>(content.size()));
  got.resize(static_cast<size_t>(n));
  CHECK((got == "HEAD" + content.substr(4)));
  // The image itself is untouched.
  const uint32_t node = f.tree().LookupPath("f");
  std::string image(content.size(), '\0');
  REQUIRE(ReadEntry(f.tree().layer(f.tree().LayerOf(node)), f.tree().EntryOf(node), 0, image.data(),
                    image.size())
              .ok());
  CHECK((image == content));
}

}  // namespace
}  // namespace layerfs
