#include "blob/span_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

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
      return Span(it->second.data);
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
  return FillSlot(key, size, fill, failed);
}

Result<SpanCache::Span> SpanCache::FillSlot(const Key& key, size_t size, const Fill& fill,
                                            const std::shared_ptr<Status>& failed) {
  size_t capacity = 0;
  SpanMemory buffer;
  {
    std::lock_guard<std::mutex> take(mu_);
    buffer = TakeBuffer(size, &capacity);
  }
  Status s = buffer ? fill(buffer.get(), size) : Status::Error(ENOMEM, "no memory for a span");
  auto bytes = std::make_shared<SpanBytes>(std::move(buffer), size, capacity);

  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(key);
  if (!s.ok()) {
    *failed = s;
    slots_.erase(it);
    Recycle(std::move(bytes));
    filled_.notify_all();
    return s;
  }
  lru_.push_front(key);
  it->second.data = bytes;
  it->second.lru = lru_.begin();
  stats_.bytes += bytes->capacity_;  // the memory held, not only the span's bytes
  EvictLocked();
  filled_.notify_all();
  return Span(bytes);
}

SpanCache::~SpanCache() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  queued_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void SpanCache::Prefetch(uint64_t source, uint64_t index, size_t size, Fill fill) {
  const Key key{source, index};
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || size > max_span() || slots_.count(key) > 0 ||
      pending_.size() >= kMaxPrefetches) {
    return;
  }
  auto failed = std::make_shared<Status>();
  slots_.emplace(key, Slot{nullptr, {}, failed});
  ++stats_.prefetches;
  pending_.push_back(Prefetched{key, size, std::move(fill), std::move(failed)});
  if (!worker_.joinable()) worker_ = std::thread([this] { PrefetchLoop(); });
  queued_.notify_one();
}

void SpanCache::PrefetchLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    queued_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping, nothing left
    Prefetched job = std::move(pending_.front());
    pending_.pop_front();
    if (stopping_) {
      // Readers may wait for it: let them fill it themselves.
      slots_.erase(job.key);
      filled_.notify_all();
      continue;
    }
    lock.unlock();
    (void)FillSlot(job.key, job.size, job.fill, job.failed);
    lock.lock();
  }
}

void SpanCache::EvictLocked() {
  while (stats_.bytes > capacity_ && lru_.size() > 1) {
    Key victim = lru_.back();
    lru_.pop_back();
    auto it = slots_.find(victim);
    stats_.bytes -= it->second.data->capacity_;
    std::shared_ptr<SpanBytes> data = std::move(it->second.data);
    slots_.erase(it);
    ++stats_.evictions;
    Recycle(std::move(data));
  }
}

namespace {
// Buffers are allocated in steps of this, so that spans of nearly the same size share them.
constexpr size_t kBufferStep = 4096;  // a page: what a mapping takes at least
constexpr size_t kHugePage = 2u << 20;
}  // namespace

void SpanMemoryFree::operator()(char* p) const {
  if (p != nullptr) ::munmap(p, capacity);
}

SpanMemory SpanCache::TakeBuffer(size_t size, size_t* capacity) {
  for (size_t i = 0; i < free_.size(); ++i) {
    if (free_[i].second >= size && free_[i].second <= size + size / 4 + kHugePage) {
      *capacity = free_[i].second;
      SpanMemory buffer = std::move(free_[i].first);
      free_bytes_ -= free_[i].second;
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      return buffer;
    }
  }
  // Spans of a megabyte or more get transparent huge pages: one fault per 2 MiB instead of 512.
  if (size >= kHugePage / 2) {
    *capacity = (size + kHugePage - 1) / kHugePage * kHugePage;
    void* raw = ::mmap(nullptr, *capacity + kHugePage, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return SpanMemory(nullptr, SpanMemoryFree{0});
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
    if (aligned > start) ::munmap(raw, aligned - start);
    const size_t tail = kHugePage - (aligned - start);
    if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + *capacity), tail);
    void* p = reinterpret_cast<void*>(aligned);
    ::madvise(p, *capacity, MADV_HUGEPAGE);
    return SpanMemory(static_cast<char*>(p), SpanMemoryFree{*capacity});
  }
  *capacity = std::max<size_t>(kBufferStep, (size + kBufferStep - 1) / kBufferStep * kBufferStep);
  void* p = ::mmap(nullptr, *capacity, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return SpanMemory(nullptr, SpanMemoryFree{0});
  return SpanMemory(static_cast<char*>(p), SpanMemoryFree{*capacity});
}

void SpanCache::Recycle(std::shared_ptr<SpanBytes> span) {
  // Only a span nobody reads any more; the others are freed by their last reader.
  if (span.use_count() != 1 || !span->bytes_ || free_bytes_ + span->capacity_ > capacity_ / 8) {
    return;
  }
  free_bytes_ += span->capacity_;
  free_.emplace_back(std::move(span->bytes_), span->capacity_);
}

}  // namespace layerfs
