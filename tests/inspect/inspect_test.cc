// The inspect logic over small layer stacks built in the test: per-layer statistics and wasted
// bytes, which layers have a path, and what one layer changes relative to those below.
#include "inspect/inspect.h"

#include <array>
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "tests/util/indexed_image.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TarWriter;

// The image of a test, with helpers to look into it.
class Image : public testing::IndexedImage {
 public:
  using IndexedImage::IndexedImage;

  PathReport Which(const std::string& path) const {
    auto r = WhichLayers(tree_, path);
    REQUIRE(r.ok());
    return std::move(r).value();
  }

  // "layer:role" for each layer of the report, top first (layers numbered from 1).
  std::vector<std::string> Roles(const std::string& path) const {
    std::vector<std::string> out;
    for (const PathLayer& l : Which(path).layers) {
      out.push_back(std::to_string(l.layer + 1) + ":" + std::string(PathRoleName(l.role)));
    }
    return out;
  }

  LayerDiff Diff(uint32_t position) {
    auto d = DiffLayer(layers_, position, &lower_, &upto_);
    REQUIRE(d.ok());
    return std::move(d).value();
  }

  // "A /path", "C /path type,mode", "D /path hidden=N" for each item of a diff.
  std::vector<std::string> DiffLines(uint32_t position) {
    std::vector<std::string> out;
    for (const DiffItem& item : Diff(position).items) {
      switch (item.kind) {
        case DiffItem::Kind::kAdded:
          out.push_back("A " + item.path);
          break;
        case DiffItem::Kind::kChanged: {
          std::string names;
          for (auto n : DiffChangeNames(item.changes)) names += (names.empty() ? "" : ",") + std::string(n);
          out.push_back("C " + item.path + " " + names +
                        (item.hidden ? " hidden=" + std::to_string(item.hidden) : ""));
          break;
        }
        case DiffItem::Kind::kDeleted:
          out.push_back(std::string(item.opaque ? "O " : "D ") + item.path +
                        " hidden=" + std::to_string(item.hidden));
          break;
      }
    }
    return out;
  }

 private:
  MergedTree lower_;
  MergedTree upto_;
};

using Lines = std::vector<std::string>;

TEST_CASE("inspect: counts per layer, and a whiteout makes the deleted file's bytes wasted",
          "[inspect]") {
  Image image({TarWriter()
                   .Dir("etc")
                   .File("etc/a", "12345")
                   .File("etc/b", "123")
                   .Symlink("etc/l", "a")
                   .Finish(),
               TarWriter().Whiteout("etc/a").File("etc/c", "1").Finish()});
  std::vector<LayerStats> s = LayerStatistics(image.tree());
  REQUIRE(s.size() == 2);
  CHECK(s[0].files == 2);
  CHECK(s[0].dirs == 1);
  CHECK(s[0].symlinks == 1);
  CHECK(s[0].tar_entries == 4);
  CHECK(s[0].file_bytes == 8);
  CHECK(s[0].wasted_files == 1);
  CHECK(s[0].wasted_bytes == 5);
  CHECK(s[1].whiteouts == 1);
  CHECK(s[1].implied_dirs == 1);  // etc/ is implied by etc/c
  CHECK(s[1].dirs == 0);
  CHECK(s[1].wasted_bytes == 0);
}

TEST_CASE("inspect: a file shadowed three times wastes the three lower copies", "[inspect]") {
  Image image({TarWriter().File("f", "1").Finish(), TarWriter().File("f", "22").Finish(),
               TarWriter().File("f", "333").Finish(), TarWriter().File("f", "4444").Finish()});
  std::vector<LayerStats> s = LayerStatistics(image.tree());
  CHECK(s[0].wasted_bytes == 1);
  CHECK(s[1].wasted_bytes == 2);
  CHECK(s[2].wasted_bytes == 3);
  CHECK(s[3].wasted_bytes == 0);

  CHECK(image.Roles("/f") == Lines{"4:serves", "3:shadowed", "2:shadowed", "1:shadowed"});
  PathReport r = image.Which("f");
  CHECK(r.path == "/f");
  CHECK(r.node != MergedTree::kNoNode);
  for (size_t k = 1; k < r.layers.size(); ++k) CHECK(r.layers[k].by == 3);

  CHECK(image.DiffLines(3) == Lines{"C /f size,content"});
  CHECK(image.DiffLines(0) == Lines{"A /f"});
}

TEST_CASE("inspect: a hard-linked file counts once, and not while any of its names shows",
          "[inspect]") {
  SECTION("both names hidden") {
    Image image({TarWriter().File("a", "0123456789").Hardlink("b", "a").Finish(),
                 TarWriter().Whiteout("a").Whiteout("b").Finish()});
    std::vector<LayerStats> s = LayerStatistics(image.tree());
    CHECK(s[0].files == 1);
    CHECK(s[0].hardlinks == 1);
    CHECK(s[0].wasted_files == 1);
    CHECK(s[0].wasted_bytes == 10);
  }
  SECTION("the target's name hidden, the link's name shows") {
    Image image({TarWriter().File("a", "0123456789").Hardlink("b", "a").Finish(),
                 TarWriter().Whiteout("a").Finish()});
    CHECK(LayerStatistics(image.tree())[0].wasted_bytes == 0);
  }
  SECTION("a hard link in a later layer keeps a lower file's data visible") {
    Image image({TarWriter().File("a", "0123456789").Finish(),
                 TarWriter().Hardlink("keep", "a").Finish(), TarWriter().Whiteout("a").Finish()});
    CHECK(LayerStatistics(image.tree())[0].wasted_bytes == 0);
    CHECK(image.Roles("/a").empty() == false);
    CHECK(image.Which("/a").node == MergedTree::kNoNode);
    CHECK(image.Which("/keep").node != MergedTree::kNoNode);
  }
}

TEST_CASE("inspect: an opaque directory wastes what it hides, and diff names it once",
          "[inspect]") {
  Image image({TarWriter()
                   .Dir("d")
                   .File("d/old", "old")
                   .File("d/keep", "lower")
                   .Dir("d/sub")
                   .File("d/sub/deep", "deep")
                   .Finish(),
               TarWriter().Dir("d").Opaque("d").File("d/keep", "upper!").Finish()});
  std::vector<LayerStats> s = LayerStatistics(image.tree());
  CHECK(s[0].wasted_bytes == 3 + 5 + 4);
  CHECK(s[1].opaque_dirs == 1);
  CHECK(image.Roles("/d/keep") == Lines{"2:serves", "1:shadowed"});
  CHECK(image.Roles("/d") == Lines{"2:serves", "1:shadowed"});
  // d/old is hidden: layer 2's opaque d/ cuts it off.
  PathReport old = image.Which("d/old");
  CHECK(old.node == MergedTree::kNoNode);
  REQUIRE(old.layers.size() == 2);
  CHECK(old.layers[0].role == PathRole::kOpaque);
  CHECK(old.layers[0].via == "/d");
  CHECK(old.layers[1].role == PathRole::kShadowed);
  CHECK(old.layers[1].by == 1);

  // Lower d/old, d/sub, d/sub/deep no longer show; d/keep shows again, changed.
  CHECK(image.DiffLines(1) == Lines{"O /d hidden=3", "C /d/keep size,content"});
  LayerDiff d = image.Diff(1);
  CHECK(d.deleted == 1);
  CHECK(d.changed == 1);
  CHECK(d.hidden == 3);
}

TEST_CASE("inspect: a whited-out directory is one deletion counting its subtree", "[inspect]") {
  Image image({TarWriter()
                   .Dir("var")
                   .Dir("var/cache")
                   .File("var/cache/a", "a")
                   .Dir("var/cache/sub")
                   .File("var/cache/sub/b", "bb")
                   .Finish(),
               TarWriter().Whiteout("var/cache").Whiteout("nothing-there").Finish()});
  CHECK(image.DiffLines(1) == Lines{"D /var/cache hidden=4"});
  LayerDiff d = image.Diff(1);
  CHECK(d.inert_whiteouts == 1);
  CHECK(LayerStatistics(image.tree())[0].wasted_bytes == 3);

  PathReport r = image.Which("/var/cache/sub/b");
  CHECK(r.node == MergedTree::kNoNode);
  REQUIRE(r.layers.size() == 2);
  CHECK(r.layers[0].role == PathRole::kWhiteout);
  CHECK(r.layers[0].via == "/var/cache");
  CHECK(r.layers[1].role == PathRole::kShadowed);
  // A whiteout of a missing path is reported for that path.
  CHECK(image.Roles("nothing-there") == Lines{"2:whiteout"});
}

TEST_CASE("inspect: directories merge; a non-directory replaces a directory", "[inspect]") {
  Image image({TarWriter().Dir("d", 0755).File("d/x", "x").Dir("e").File("e/y", "y").Finish(),
               TarWriter().Dir("d", 0700).File("d/z", "z").File("e", "now a file").Finish()});
  CHECK(image.Roles("d") == Lines{"2:serves", "1:merged"});
  CHECK(image.Roles("d/x") == Lines{"1:serves"});
  CHECK(image.Roles("e") == Lines{"2:serves", "1:shadowed"});
  PathReport y = image.Which("e/y");
  CHECK(y.node == MergedTree::kNoNode);
  REQUIRE_FALSE(y.layers.empty());
  CHECK(y.layers[0].role == PathRole::kReplaced);
  CHECK(y.layers[0].via == "/e");
  CHECK(image.DiffLines(1) == Lines{"C /d mode", "A /d/z", "C /e type hidden=1"});
  CHECK(LayerStatistics(image.tree())[0].wasted_bytes == 1);
}

TEST_CASE("inspect: which agrees with the merged tree on what shows", "[inspect]") {
  Image image({TarWriter()
                   .Dir("a")
                   .File("a/f", "1")
                   .Dir("a/b")
                   .File("a/b/g", "2")
                   .Symlink("s", "a")
                   .File("h", "3")
                   .Finish(),
               TarWriter().Whiteout("a/b").File("s", "file now").Dir("h").File("h/i", "4").Finish(),
               TarWriter().Dir("a/b").File("a/b/new", "5").Opaque("h").Finish()});
  for (const char* path : {"a", "a/f", "a/b", "a/b/g", "a/b/new", "s", "h", "h/i", "", "zz"}) {
    INFO(path);
    PathReport r = image.Which(path);
    bool serves = false;
    for (const PathLayer& l : r.layers) serves |= l.role == PathRole::kServes;
    CHECK(serves == (image.tree().LookupPath(path) != MergedTree::kNoNode));
    CHECK(serves == (r.node != MergedTree::kNoNode));
  }
  CHECK(image.Roles("a/b/g") == Lines{"2:whiteout", "1:shadowed"});
  CHECK(image.Roles("") == Lines{"3:serves", "2:merged", "1:merged"});
}

TEST_CASE("inspect: layer arguments are numbers from 1 or digest prefixes", "[inspect]") {
  std::vector<LayerSpec> specs(3);
  for (int i = 0; i < 3; ++i) {
    std::array<uint8_t, Digest::kSize> bytes{};
    bytes[0] = static_cast<uint8_t>(0xa0 + i);
    bytes[1] = 0x11;
    specs[i].diff_id = Digest(bytes);
  }
  CHECK(*ParseLayerArg("1", specs) == 0);
  CHECK(*ParseLayerArg("3", specs) == 2);
  auto bad = ParseLayerArg("4", specs);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("1 (bottom) to 3 (top)") != std::string::npos);
  CHECK_FALSE(ParseLayerArg("0", specs).ok());
  CHECK(*ParseLayerArg("a111", specs) == 1);
  CHECK(*ParseLayerArg("sha256:a211", specs) == 2);
  CHECK_FALSE(ParseLayerArg("ffff", specs).ok());
  CHECK_FALSE(ParseLayerArg("a1", specs).ok());  // too short to be a prefix
  specs[1].blob_digest = specs[0].diff_id;
  auto ambiguous = ParseLayerArg("a011", specs);
  REQUIRE_FALSE(ambiguous.ok());
  CHECK(ambiguous.status().message().find("layers 1, 2") != std::string::npos);
}

}  // namespace
}  // namespace layerfs
