#include "tree/layer_stack.h"

#include "base/path.h"

namespace layerfs {

StackHit StackLookup(const std::vector<Layer>& layers, size_t top, std::string_view path) {
  std::vector<std::string_view> parts = SplitPath(path);
  if (parts.empty()) return {};
  for (size_t j = top; j-- > 0;) {
    const LayerIndex& ix = layers[j].index;
    uint32_t cur = kRootEntry;
    bool stop_below = (ix.entry(cur).flags & kFlagOpaque) != 0;
    bool missing = false;
    for (size_t k = 0; k < parts.size(); ++k) {
      uint32_t child = ix.FindChild(cur, parts[k]);
      if (child == kNoEntry) {
        // Not in this layer; lower layers may have it unless this directory is opaque here.
        missing = true;
        break;
      }
      const IndexEntry& e = ix.entry(child);
      auto type = static_cast<EntryType>(e.type);
      if (type == EntryType::kWhiteout) return {};
      if (k + 1 == parts.size()) {
        if (type == EntryType::kHardlink) {
          if (e.flags & kFlagLowerLink) return StackLookup(layers, j, ix.link_target(e));
          return {static_cast<uint32_t>(j), static_cast<uint32_t>(e.data)};
        }
        return {static_cast<uint32_t>(j), child};
      }
      if (type != EntryType::kDirectory) return {};  // a non-directory hides what is below
      cur = child;
      stop_below = stop_below || (e.flags & kFlagOpaque) != 0;
    }
    if (missing && stop_below) return {};
  }
  return {};
}

}  // namespace layerfs
