// Resolving a path through a stack of layers one layer at a time, the way an overlay without a
// merged index must: top layer first, honouring whiteouts, opaque directories and non-directories
// that hide lower directories.
//
// The merged tree needs this only for hard links whose target lies in a lower layer; `layerfs
// bench` uses it as the baseline the merged tree is measured against.
#ifndef LAYERFS_TREE_LAYER_STACK_H_
#define LAYERFS_TREE_LAYER_STACK_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "index/layer_store.h"

namespace layerfs {

struct StackHit {
  uint32_t layer = 0;  // position in the stack
  uint32_t entry = kNoEntry;
  bool found() const { return entry != kNoEntry; }
};

// Finds the entry that `path` (normalised, non-empty) names in the union of layers[0, top), top
// layer first. A hard link found is followed to its target entry. Returns an empty hit when the
// path does not exist in that union.
StackHit StackLookup(const std::vector<Layer>& layers, size_t top, std::string_view path);

}  // namespace layerfs

#endif  // LAYERFS_TREE_LAYER_STACK_H_
