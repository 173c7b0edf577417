// SpanCache: decompressed spans of compressed layers, kept in memory for the reads that follow.
//
// One cache serves every layer of a mount. It is bounded in bytes and evicts the least recently
// used span first; a span being decompressed is decompressed once, however many readers want it
// at the same time (the others wait for it). Spans larger than half the bound are not
// kept: their readers decode what they need themselves, so that no span, however a layer was
// crafted, costs more memory than the bound (and an eighth of it in buffers kept for reuse).
#ifndef LAYERFS_BLOB_SPAN_CACHE_H_
#define LAYERFS_BLOB_SPAN_CACHE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "layerfs/status.h"

namespace layerfs {

inline constexpr uint64_t kDefaultSpanCache = 64u << 20;

// Memory for spans, mapped on its own: small spans with their pages populated at once (one system
// call, where touching a fresh page at a time costs a fault each, dear under a hypervisor), spans
// of a megabyte or more in transparent huge pages.
struct SpanMemoryFree {
  size_t capacity = 0;
  void operator()(char* p) const;
};
using SpanMemory = std::unique_ptr<char[], SpanMemoryFree>;

// The bytes of one decompressed span.
class SpanBytes {
 public:
  SpanBytes(SpanMemory bytes, size_t size, size_t capacity)
      : bytes_(std::move(bytes)), size_(size), capacity_(capacity) {}
  const char* data() const { return bytes_.get(); }
  size_t size() const { return size_; }

 private:
  friend class SpanCache;
  SpanMemory bytes_;
  size_t size_;
  size_t capacity_;
};

class SpanCache {
 public:
  using Span = std::shared_ptr<const SpanBytes>;
  // Fills `out` (already sized) with the span's bytes.
  using Fill = std::function<Status(char* out, size_t size)>;

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;  // spans decompressed
    uint64_t evictions = 0;
    uint64_t prefetches = 0;  // spans made ahead of their reads
    uint64_t bytes = 0;       // held now
  };

  explicit SpanCache(uint64_t capacity) : capacity_(capacity) {}
  ~SpanCache();
  SpanCache(const SpanCache&) = delete;
  SpanCache& operator=(const SpanCache&) = delete;

  // A new number for a source whose spans this cache keeps (spans are keyed by it).
  uint64_t NewSourceId();
  // The largest span kept.
  uint64_t max_span() const { return capacity_ / 2; }
  uint64_t capacity() const { return capacity_; }

  // Span `index` of source `source` (`size` bytes): from the cache, or made by `fill`, once,
  // while other callers wanting it wait. A failed fill is not kept: its error goes to the caller
  // that ran it and to those waiting.
  Result<Span> Get(uint64_t source, uint64_t index, size_t size, const Fill& fill);

  // Starts making span `index` of `source` on a background thread (read-ahead), unless it is
  // kept or being made already, or a few others wait to be made. A reader that wants it meanwhile
  // waits for it as for any span being filled.
  void Prefetch(uint64_t source, uint64_t index, size_t size, Fill fill);

  Stats stats() const;

 private:
  struct Key {
    uint64_t source;
    uint64_t index;
    bool operator==(const Key& o) const { return source == o.source && index == o.index; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return k.source * 0x9e3779b97f4a7c15ull ^ k.index; }
  };
  struct Slot {
    std::shared_ptr<SpanBytes> data;  // null while being filled
    std::list<Key>::iterator lru;     // valid once filled
    std::shared_ptr<Status> failed;   // set (and the slot removed) when the fill failed
  };

  struct Prefetched {
    Key key;
    size_t size;
    Fill fill;
    std::shared_ptr<Status> failed;
  };
  static constexpr size_t kMaxPrefetches = 2;

  Result<Span> FillSlot(const Key& key, size_t size, const Fill& fill,
                        const std::shared_ptr<Status>& failed);
  void PrefetchLoop();
  void EvictLocked();
  // A buffer of at least `size` bytes (contents undefined): a recycled one when there is one, so
  // that spans do not cost fresh pages (a page fault each) and their zeroing.
  SpanMemory TakeBuffer(size_t size, size_t* capacity);
  void Recycle(std::shared_ptr<SpanBytes> span);

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable filled_;
  std::unordered_map<Key, Slot, KeyHash> slots_;
  std::list<Key> lru_;  // most recent first
  // Buffers of evicted spans kept for the next ones (at most an eighth of the bound in all).
  std::vector<std::pair<SpanMemory, size_t>> free_;
  uint64_t free_bytes_ = 0;
  uint64_t next_source_ = 1;
  Stats stats_;
  std::deque<Prefetched> pending_;
  std::condition_variable queued_;
  bool stopping_ = false;
  std::thread worker_;  // started by the first Prefetch()
};

}  // namespace layerfs

#endif  // LAYERFS_BLOB_SPAN_CACHE_H_
