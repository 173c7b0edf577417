// IndexBuilder: turns the entries of one layer tar, in tar order, into a layer index file.
//
// It applies the rules that hold within one layer: paths are normalised, missing parent
// directories are implied, a later entry for a path replaces an earlier one, `.wh.NAME` becomes a
// whiteout entry and `.wh..wh..opq` an opaque flag on its directory (wherever it appears in the
// tar), and hard links are resolved to the entry they name. Rules across layers are the merged
// tree's (tree/merged_tree.h).
#ifndef LAYERFS_INDEX_INDEX_BUILDER_H_
#define LAYERFS_INDEX_INDEX_BUILDER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/child_table.h"
#include "blob/checkpoints.h"
#include "index/format.h"
#include "layerfs/digest.h"
#include "layerfs/status.h"
#include "tar/tar_reader.h"

namespace layerfs {

class IndexBuilder {
 public:
  IndexBuilder();
  ~IndexBuilder();
  IndexBuilder(const IndexBuilder&) = delete;
  IndexBuilder& operator=(const IndexBuilder&) = delete;

  // Adds one tar entry. Errors (a path that leaves the root, a hard link or whiteout naming
  // something outside the image) name the entry; the caller adds the layer.
  Status Add(const TarEntry& entry);

  // Warnings about entries that were skipped (e.g. a hard link to a directory), one line each.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The compressed blob a layer is served from in place: its checkpoints, digest and size.
  struct InPlace {
    const CheckpointList* checkpoints = nullptr;
    Digest blob_digest;
    uint64_t blob_size = 0;
  };

  // Serialises the index. `diff_id` and `tar_size` describe the tar the entries came from;
  // `in_place`, when given, the compressed blob it is read from.
  Result<std::string> Finish(const Digest& diff_id, uint64_t tar_size,
                             const InPlace* in_place = nullptr);

 private:
  struct Entry;

  uint32_t FindChild(uint32_t dir, std::string_view name) const;
  Result<uint32_t> EnsureDir(std::string_view path);
  uint32_t AppendEntry(uint32_t parent, std::string_view name);
  uint32_t NewEntry(uint32_t parent, std::string_view name);
  uint32_t ReplaceEntry(uint32_t old_index);
  uint32_t FindPath(std::string_view normalized) const;
  void Warn(const TarEntry& entry, std::string_view what);

  std::vector<Entry> entries_;
  ChildTable table_;
  std::vector<std::string> warnings_;
  uint64_t tar_entries_ = 0;
  uint32_t dropped_ = 0;
};

}  // namespace layerfs

#endif  // LAYERFS_INDEX_INDEX_BUILDER_H_
