#include <catch2/catch.hpp>

#include "index/layer_data.h"
#include "tests/util/tar_writer.h"
#include "tree/merged_tree.h"

namespace layerfs {
namespace {

using testing::TarWriter;

TEST_CASE("a two-layer image merges with a whiteout", "[smoke]") {
  std::string lower = TarWriter().Dir("etc").File("etc/a", "A").File("etc/b", "B").Finish();
  std::string upper = TarWriter().Whiteout("etc/a").File("etc/c", "C").Finish();
  auto layers = testing::IndexLayers({lower, upper});
  auto tree = MergedTree::Build(layers);
  REQUIRE(tree.ok());
  CHECK(tree->LookupPath("etc/a") == MergedTree::kNoNode);
  uint32_t b = tree->LookupPath("etc/b");
  REQUIRE(b != MergedTree::kNoNode);
  char buf[8];
  auto n = ReadEntry(tree->layer(tree->LayerOf(b)), tree->EntryOf(b), 0, buf, sizeof(buf));
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "B");
  CHECK(tree->LookupPath("etc/c") != MergedTree::kNoNode);
}

}  // namespace
}  // namespace layerfs

