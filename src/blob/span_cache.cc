#include "blob/span_cache.h"

namespace layerfs {

uint64_t SpanCache::NewSourceId() {
  std::lock_guard<std::mutex> lock(mu_);
  return next_source_++;
}

SpanCache::Stats SpanCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Result<SpanCache::Span> SpanCache::Get(uint64_t source, uint64_t index, size_t size,
                                       const Fill& fill) {
  const Key key{source, index};
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = slots_.find(key);
    if (it == slots_.end()) break;
    if (it->second.data) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      ++stats_.hits;
      return it->second.data;
    }
    // Being filled by another reader: wait for it, then look again.
    std::shared_ptr<Status> failed = it->second.failed;
    filled_.wait(lock, [&] {
      auto now = slots_.find(key);
      return now == slots_.end() || now->second.data != nullptr;
    });
    if (failed && !failed->ok()) return *failed;
  }
  auto failed = std::make_shared<Status>();
  slots_.emplace(key, Slot{nullptr, {}, failed});
  ++stats_.misses;
  lock.unlock();

  auto bytes = std::make_shared<std::string>(size, '\0');
  Status s = fill(bytes->data(), size);

  lock.lock();
  auto it = slots_.find(key);
  if (!s.ok()) {
    *failed = s;
    slots_.erase(it);
    filled_.notify_all();
    return s;
  }
  lru_.push_front(key);
  it->second.data = bytes;
  it->second.lru = lru_.begin();
  stats_.bytes += size;
  EvictLocked();
  filled_.notify_all();
  return Span(bytes);
}

void SpanCache::EvictLocked() {
  while (stats_.bytes > capacity_ && lru_.size() > 1) {
    Key victim = lru_.back();
    lru_.pop_back();
    auto it = slots_.find(victim);
    stats_.bytes -= it->second.data->size();
    slots_.erase(it);
    ++stats_.evictions;
  }
}

}  // namespace layerfs
