// SpanCache: decompressed spans of compressed layers, kept in memory for the reads that follow.
//
// One cache serves every layer of a mount. It is bounded in bytes and evicts the least recently
// used span first; a span being decompressed is decompressed once, however many readers want it
// at the same time (the others wait for it). Spans larger than a quarter of the bound are not
// kept: their readers decode what they need themselves, so that no span, however a layer was
// crafted, costs more memory than the bound.
#ifndef LAYERFS_BLOB_SPAN_CACHE_H_
#define LAYERFS_BLOB_SPAN_CACHE_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "layerfs/status.h"

namespace layerfs {

inline constexpr uint64_t kDefaultSpanCache = 64u << 20;

class SpanCache {
 public:
  using Span = std::shared_ptr<const std::string>;
  // Fills `out` (already sized) with the span's bytes.
  using Fill = std::function<Status(char* out, size_t size)>;

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;  // spans decompressed
    uint64_t evictions = 0;
    uint64_t bytes = 0;  // held now
  };

  explicit SpanCache(uint64_t capacity) : capacity_(capacity) {}

  // A new number for a source whose spans this cache keeps (spans are keyed by it).
  uint64_t NewSourceId();
  // The largest span kept.
  uint64_t max_span() const { return capacity_ / 4; }
  uint64_t capacity() const { return capacity_; }

  // Span `index` of source `source` (`size` bytes): from the cache, or made by `fill`, once,
  // while other callers wanting it wait. A failed fill is not kept: its error goes to the caller
  // that ran it and to those waiting.
  Result<Span> Get(uint64_t source, uint64_t index, size_t size, const Fill& fill);

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
    Span data;                       // null while being filled
    std::list<Key>::iterator lru;    // valid once filled
    std::shared_ptr<Status> failed;  // set (and the slot removed) when the fill failed
  };

  void EvictLocked();

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable filled_;
  std::unordered_map<Key, Slot, KeyHash> slots_;
  std::list<Key> lru_;  // most recent first
  uint64_t next_source_ = 1;
  Stats stats_;
};

}  // namespace layerfs

#endif  // LAYERFS_BLOB_SPAN_CACHE_H_
