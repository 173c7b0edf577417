// An image for tests that look into the merged tree without mounting: layers indexed from tars
// held in memory, and the tree built over them.
#ifndef LAYERFS_TESTS_UTIL_INDEXED_IMAGE_H_
#define LAYERFS_TESTS_UTIL_INDEXED_IMAGE_H_

#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/util/tar_writer.h"
#include "tree/merged_tree.h"

namespace layerfs::testing {

// The tree keeps a pointer to the layer vector, so the pair never moves.
class IndexedImage {
 public:
  explicit IndexedImage(const std::vector<std::string>& tars) : layers_(IndexLayers(tars)) {
    auto tree = MergedTree::Build(layers_);
    REQUIRE(tree.ok());
    tree_ = std::move(tree).value();
  }
  IndexedImage(const IndexedImage&) = delete;
  IndexedImage& operator=(const IndexedImage&) = delete;

  const MergedTree& tree() const { return tree_; }
  const std::vector<Layer>& layers() const { return layers_; }

 protected:
  std::vector<Layer> layers_;
  MergedTree tree_;
};

}  // namespace layerfs::testing

#endif  // LAYERFS_TESTS_UTIL_INDEXED_IMAGE_H_
