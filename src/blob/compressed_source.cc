#include "blob/compressed_source.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace layerfs {
namespace {

// Bytes of the blob read past the next checkpoint: inflaters read a few bytes ahead.
constexpr uint64_t kReadAhead = 64;

}  // namespace

CompressedSource::CompressedSource(std::shared_ptr<const ByteSource> blob, CheckpointTable table,
                                   uint64_t size, std::shared_ptr<SpanCache> cache,
                                   Inflater inflater)
    : blob_(std::move(blob)),
      table_(std::move(table)),
      size_(size),
      cache_(std::move(cache)),
      cache_id_(cache_ ? cache_->NewSourceId() : 0),
      inflater_(inflater) {}

uint64_t CompressedSource::SpanEnd(size_t k) const {
  return k + 1 < table_.count ? table_.points[k + 1].out_offset : size_;
}

Status CompressedSource::Decode(size_t k, uint64_t skip, char* out, size_t size) const {
  const IndexCheckpoint& p = table_.points[k];
  CheckpointRef cp;
  cp.out = p.out_offset;
  cp.in = p.in_offset;
  cp.bits = p.bits;
  cp.window_raw = p.window_raw;
  cp.window = std::string_view(table_.windows + p.window_offset, p.window_size);
  uint64_t in_end =
      k + 1 < table_.count ? table_.points[k + 1].in_offset + kReadAhead : blob_->size();
  // The compressed bytes of the span at once (the byte before a checkpoint inside a byte too):
  // a remote blob fetches them in one request rather than one per piece the decoder reads.
  const uint64_t in_start = cp.bits > 0 && cp.in > 0 ? cp.in - 1 : cp.in;
  Status s = blob_->WillRead(in_start, std::min(in_end, blob_->size()) - in_start);
  if (s.ok()) s = DecodeFrom(*blob_, table_.codec, inflater_, cp, in_end, skip, out, size);
  if (!s.ok() && !logged_.exchange(true)) {
    LogError("{}; the reads that need this part of the layer fail with EIO", s.message());
  }
  return s;
}

void CompressedSource::PrefetchAfter(size_t k) const {
  if (k + 1 >= table_.count) return;
  const uint64_t length = SpanEnd(k + 1) - table_.points[k + 1].out_offset;
  std::weak_ptr<const CompressedSource> self = weak_from_this();
  cache_->Prefetch(cache_id_, k + 1, static_cast<size_t>(length),
                   [self, k](char* out, size_t size) {
                     auto source = self.lock();
                     if (!source) return Status::Error(ECANCELED, "the layer is gone");
                     return source->Decode(k + 1, 0, out, size);
                   });
}

Status CompressedSource::ReadAt(uint64_t offset, char* buf, size_t size) const {
  if (offset > size_ || size > size_ - offset) {
    return Status::Invalid(name() + ": read past the end of the layer");
  }
  while (size > 0) {
    // The last checkpoint at or before `offset`.
    const IndexCheckpoint* end = table_.points + table_.count;
    const IndexCheckpoint* it =
        std::upper_bound(table_.points, end, offset,
                         [](uint64_t off, const IndexCheckpoint& p) { return off < p.out_offset; });
    if (it == table_.points) return Status::Corrupt(name() + ": no checkpoint before the read");
    const size_t k = static_cast<size_t>(it - table_.points) - 1;
    const uint64_t start = table_.points[k].out_offset;
    const uint64_t span_end = SpanEnd(k);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size, span_end - offset));
    const uint64_t length = span_end - start;
    if (cache_ && length <= cache_->max_span()) {
      LAYERFS_ASSIGN_OR_RETURN(
          SpanCache::Span span,
          cache_->Get(cache_id_, k, static_cast<size_t>(length),
                      [&](char* out, size_t len) { return Decode(k, 0, out, len); }));
      std::memcpy(buf, span->data() + (offset - start), n);
      if ((offset + n - start) * 2 > length) PrefetchAfter(k);
    } else {
      LAYERFS_RETURN_IF_ERROR(Decode(k, offset - start, buf, n));
    }
    buf += n;
    offset += n;
    size -= n;
  }
  return Status::Ok();
}

}  // namespace layerfs
