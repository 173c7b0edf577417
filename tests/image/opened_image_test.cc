// Opening an image as every command does: manifests, layers indexed once into the cache, the tree.
#include "image/opened_image.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TarWriter;

TEST_CASE("image: opened once with indexing, then from the cache", "[image]") {
  testing::TempDir dir;
  const std::vector<std::string> tars = {
      TarWriter().Dir("etc").File("etc/os-release", "ID=base\n").Finish(),
      TarWriter().File("etc/os-release", "ID=top\n").File("app", "binary").Finish()};
  testing::WriteOciLayout(dir.Sub("oci"), tars, "gzip");
  testing::LetTimestampsSettle();  // so that the blobs' verification is recorded
  ImageArgs args;
  args.image = dir.Sub("oci");
  args.cache = dir.Sub("cache");
  auto first = OpenImage(args);
  REQUIRE(first.ok());
  CHECK((*first)->layers.size() == 2);
  CHECK((*first)->stats.layers_indexed == 2);
  const MergedTree& tree = (*first)->tree;
  const uint32_t os = tree.LookupPath("etc/os-release");
  REQUIRE(os != MergedTree::kNoNode);
  CHECK(tree.LayerOf(os) == 1);  // the top layer's file
  CHECK(tree.LookupPath("app") != MergedTree::kNoNode);

  auto second = OpenImage(args);
  REQUIRE(second.ok());
  CHECK((*second)->stats.layers_indexed == 0);
  CHECK((*second)->stats.layers_verified == 0);
  CHECK((*second)->tree.visible_count() == tree.visible_count());
}

TEST_CASE("image: what cannot be opened is one error naming it", "[image]") {
  testing::TempDir dir;
  ImageArgs args;
  args.image = dir.Sub("nothing-here");
  args.cache = dir.Sub("cache");
  auto missing = OpenImage(args);
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.status().message(), Catch::Contains("nothing-here"));

  testing::WriteDockerDir(dir.Sub("docker"), {TarWriter().File("a", "1").Finish()});
  args.image = dir.Sub("docker");
  args.ref = "no-such:tag";
  auto wrong_ref = OpenImage(args);
  REQUIRE_FALSE(wrong_ref.ok());
  CHECK_THAT(wrong_ref.status().message(), Catch::Contains("no-such:tag"));
}

}  // namespace
}  // namespace layerfs
