// StackLookup: path resolution one layer at a time, top first. It is both the baseline the merged
// tree is measured against and the resolver of hard links whose target is in a lower layer.
#include "tree/layer_stack.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TarWriter;

// The entry `path` names in `layers[layer]`'s own index, for comparing against a hit.
StackHit EntryIn(const std::vector<Layer>& layers, uint32_t layer, const std::string& path) {
  uint32_t entry = layers[layer].index.FindPath(path);
  REQUIRE(entry != kNoEntry);
  return {layer, entry};
}

void CheckHit(const StackHit& got, const StackHit& want) {
  REQUIRE(got.found());
  CHECK(got.layer == want.layer);
  CHECK(got.entry == want.entry);
}

TEST_CASE("StackLookup finds the highest layer's entry", "[tree]") {
  auto layers = testing::IndexLayers({TarWriter().File("a", "0").File("d/x", "0").Finish(),
                                      TarWriter().File("a", "1").Finish(),
                                      TarWriter().File("b", "2").Finish()});
  CheckHit(StackLookup(layers, 3, "a"), EntryIn(layers, 1, "a"));
  CheckHit(StackLookup(layers, 3, "b"), EntryIn(layers, 2, "b"));
  CheckHit(StackLookup(layers, 3, "d/x"), EntryIn(layers, 0, "d/x"));
  CheckHit(StackLookup(layers, 3, "d"), EntryIn(layers, 0, "d"));
  CHECK_FALSE(StackLookup(layers, 3, "missing").found());
  CHECK_FALSE(StackLookup(layers, 3, "d/missing").found());
  CHECK_FALSE(StackLookup(layers, 3, "").found());
}

TEST_CASE("StackLookup considers only the layers below `top`", "[tree]") {
  auto layers = testing::IndexLayers({TarWriter().File("a", "0").Finish(),
                                      TarWriter().File("a", "1").File("b", "1").Finish(),
                                      TarWriter().Whiteout("a").Finish()});
  CHECK_FALSE(StackLookup(layers, 3, "a").found());
  CheckHit(StackLookup(layers, 2, "a"), EntryIn(layers, 1, "a"));
  CheckHit(StackLookup(layers, 1, "a"), EntryIn(layers, 0, "a"));
  CHECK_FALSE(StackLookup(layers, 1, "b").found());
  CHECK_FALSE(StackLookup(layers, 0, "a").found());
}

TEST_CASE("StackLookup stops at whiteouts, opaque directories and non-directories", "[tree]") {
  auto layers = testing::IndexLayers({TarWriter()
                                          .File("gone", "0")
                                          .File("w/x", "0")
                                          .File("o/lower", "0")
                                          .File("f/x", "0")
                                          .File("o/both", "0")
                                          .Finish(),
                                      TarWriter()
                                          .Whiteout("gone")
                                          .Whiteout("w")
                                          .Opaque("o")
                                          .File("o/both", "1")
                                          .File("f", "a file now")
                                          .Finish()});
  CHECK_FALSE(StackLookup(layers, 2, "gone").found());
  CHECK_FALSE(StackLookup(layers, 2, "w").found());
  CHECK_FALSE(StackLookup(layers, 2, "w/x").found());
  CHECK_FALSE(StackLookup(layers, 2, "o/lower").found());
  CheckHit(StackLookup(layers, 2, "o/both"), EntryIn(layers, 1, "o/both"));
  CheckHit(StackLookup(layers, 2, "f"), EntryIn(layers, 1, "f"));
  CHECK_FALSE(StackLookup(layers, 2, "f/x").found());

  SECTION("an opaque root") {
    auto rooted = testing::IndexLayers(
        {TarWriter().File("a", "0").Finish(), TarWriter().Opaque("").File("b", "1").Finish()});
    CHECK_FALSE(StackLookup(rooted, 2, "a").found());
    CheckHit(StackLookup(rooted, 2, "b"), EntryIn(rooted, 1, "b"));
  }
}

TEST_CASE("StackLookup follows a hard link to the entry that holds the data", "[tree]") {
  auto layers = testing::IndexLayers({TarWriter().File("a", "data").Finish(),
                                      TarWriter().File("x", "x").Hardlink("y", "x").Finish(),
                                      TarWriter().Hardlink("lower", "a").Finish()});
  CheckHit(StackLookup(layers, 3, "y"), EntryIn(layers, 1, "x"));
  CheckHit(StackLookup(layers, 3, "lower"), EntryIn(layers, 0, "a"));
  SECTION("a link whose target is gone below it resolves to nothing") {
    auto broken = testing::IndexLayers(
        {TarWriter().File("keep", "").Finish(), TarWriter().Hardlink("b", "missing").Finish()});
    CHECK_FALSE(StackLookup(broken, 2, "b").found());
  }
}

}  // namespace
}  // namespace layerfs
