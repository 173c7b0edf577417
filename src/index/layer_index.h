// LayerIndex: a validated, read-only view of one layer index (format.h), mapped from the cache.
//
// Open() checks the whole file once (magic, version, checksum, and every offset and count against
// its section), so that the accessors below can index without further checks. Immutable after
// Open(): safe to share between threads without locks.
#ifndef LAYERFS_INDEX_LAYER_INDEX_H_
#define LAYERFS_INDEX_LAYER_INDEX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/mapped_file.h"
#include "blob/compressed_source.h"
#include "index/format.h"
#include "layerfs/digest.h"
#include "layerfs/status.h"

namespace layerfs {

struct SparseRunView {
  uint64_t logical;
  uint64_t length;
  uint64_t physical;
};

class LayerIndex {
 public:
  LayerIndex() = default;
  LayerIndex(LayerIndex&&) noexcept = default;
  LayerIndex& operator=(LayerIndex&&) noexcept = default;

  // Maps and validates the index file at `path`.
  static Result<LayerIndex> Open(const std::string& path);
  // Validates an index held in memory (tests, fuzzing, a freshly built index).
  static Result<LayerIndex> FromBytes(std::string bytes);

  const IndexHeader& header() const { return *reinterpret_cast<const IndexHeader*>(base_); }
  Digest diff_id() const;
  uint64_t tar_size() const { return header().tar_size; }
  uint32_t entry_count() const { return header().entry_count; }
  size_t file_size() const { return size_; }
  // The whole index as stored.
  std::string_view bytes() const { return {reinterpret_cast<const char*>(base_), size_}; }

  // How the layer's tar is reached: kIndexCodecNone (a file), or in place from a compressed blob
  // through checkpoints, whose digest and size the index then records.
  IndexCodec codec() const { return static_cast<IndexCodec>(header().codec); }
  Digest blob_digest() const;
  uint64_t blob_size() const { return header().blob_size; }
  uint64_t span() const { return header().span; }
  uint32_t checkpoint_count() const { return header().checkpoint_count; }
  // The checkpoints, holding the index's memory for as long as the table lives.
  CheckpointTable checkpoints() const;

  // REQUIRES: i < entry_count()
  const IndexEntry& entry(uint32_t i) const { return entries_[i]; }
  std::string_view name(const IndexEntry& e) const { return String(e.name_off, e.name_len); }
  // The string area (names are at IndexEntry::name_off).
  const char* strings() const { return strings_; }
  // Symlink target, or the path of a hard link into a lower layer.
  std::string_view link_target(const IndexEntry& e) const {
    return String(static_cast<uint32_t>(e.data), static_cast<uint32_t>(e.size));
  }
  // Children of a directory entry: [first, first + count).
  uint32_t first_child(const IndexEntry& dir) const { return static_cast<uint32_t>(dir.data); }
  uint32_t child_count(const IndexEntry& dir) const { return static_cast<uint32_t>(dir.size); }

  // The entry named `name` in directory `dir`, or kNoEntry. One hash probe.
  uint32_t FindChild(uint32_t dir, std::string_view name) const;
  // The entry at a normalised path ("" is the root), or kNoEntry; walks the components.
  uint32_t FindPath(std::string_view normalized) const;
  // "a/b/c" for an entry.
  std::string PathOf(uint32_t i) const;

  uint16_t xattr_count(const IndexEntry& e) const { return e.xattr_count; }
  std::string_view xattr_name(const IndexEntry& e, uint16_t k) const {
    const IndexXattr& x = xattrs_[e.xattr_first + k];
    return String(x.name_off, x.name_len);
  }
  std::string_view xattr_value(const IndexEntry& e, uint16_t k) const {
    const IndexXattr& x = xattrs_[e.xattr_first + k];
    return String(x.value_off, x.value_len);
  }

  // Sparse map of a kFlagSparse entry.
  uint64_t sparse_run_count(const IndexEntry& e) const { return sparse_[e.data]; }
  SparseRunView sparse_run(const IndexEntry& e, uint64_t k) const {
    const uint64_t* p = sparse_ + e.data + 1 + 3 * k;
    return {p[0], p[1], p[2]};
  }

 private:
  Status Validate();
  Status ValidateCheckpoints();
  std::string_view String(uint32_t off, uint32_t len) const {
    return std::string_view(strings_ + off, len);
  }

  std::shared_ptr<const void> storage_;  // the mapping or the bytes, shared with checkpoint tables
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  const IndexEntry* entries_ = nullptr;
  const uint32_t* slots_ = nullptr;
  const IndexXattr* xattrs_ = nullptr;
  const uint64_t* sparse_ = nullptr;
  const char* strings_ = nullptr;
  const IndexCheckpoint* checkpoints_ = nullptr;
  const char* windows_ = nullptr;
};

}  // namespace layerfs

#endif  // LAYERFS_INDEX_LAYER_INDEX_H_
