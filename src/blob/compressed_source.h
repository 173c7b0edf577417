// CompressedSource: the uncompressed tar of a gzip or zstd layer, read in place from its blob
// through the checkpoints of its index.
//
// A read finds the checkpoint at or before its offset, takes that span (checkpoint to next
// checkpoint) from the mount's SpanCache or decompresses it there, and copies its bytes out. A
// read in the second half of a span has the next one decompressed in the background, so that a
// sequential reader finds it ready. The
// blob itself is another ByteSource (a local file today), so where the compressed bytes come from
// does not matter here.
#ifndef LAYERFS_BLOB_COMPRESSED_SOURCE_H_
#define LAYERFS_BLOB_COMPRESSED_SOURCE_H_

#include <atomic>
#include <memory>
#include <string>

#include "blob/byte_source.h"
#include "blob/span_cache.h"
#include "blob/span_decoder.h"
#include "index/format.h"

namespace layerfs {

// A layer index's checkpoints, as they lie in the mapped index: `keep` holds that memory.
struct CheckpointTable {
  std::shared_ptr<const void> keep;
  IndexCodec codec = kIndexCodecNone;
  const IndexCheckpoint* points = nullptr;
  size_t count = 0;
  const char* windows = nullptr;
  uint64_t windows_size = 0;
};

class CompressedSource final : public ByteSource,
                               public std::enable_shared_from_this<CompressedSource> {
 public:
  // REQUIRES: `table` was validated against `blob` and `size` (LayerIndex does it).
  CompressedSource(std::shared_ptr<const ByteSource> blob, CheckpointTable table, uint64_t size,
                   std::shared_ptr<SpanCache> cache, Inflater inflater);

  uint64_t size() const override { return size_; }
  const std::string& name() const override { return blob_->name(); }
  Status ReadAt(uint64_t offset, char* buf, size_t size) const override;
  bool Intact() const override { return blob_->Intact(); }

  size_t span_count() const { return table_.count; }

 private:
  // The span starting at checkpoint `k`: [start, end) of the tar.
  uint64_t SpanEnd(size_t k) const;
  Status Decode(size_t k, uint64_t skip, char* out, size_t size) const;
  // Read-ahead: a read in the second half of span `k` has span k + 1 made in the background.
  void PrefetchAfter(size_t k) const;

  std::shared_ptr<const ByteSource> blob_;
  CheckpointTable table_;
  uint64_t size_;
  std::shared_ptr<SpanCache> cache_;
  uint64_t cache_id_;
  Inflater inflater_;
  mutable std::atomic<bool> logged_{false};
};

}  // namespace layerfs

#endif  // LAYERFS_BLOB_COMPRESSED_SOURCE_H_
