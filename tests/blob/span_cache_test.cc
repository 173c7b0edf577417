#include "blob/span_cache.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

namespace layerfs {
namespace {

SpanCache::Fill FillWith(char c, std::atomic<int>* calls) {
  return [c, calls](char* out, size_t size) {
    ++*calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (size_t i = 0; i < size; ++i) out[i] = c;
    return Status::Ok();
  };
}

TEST_CASE("span cache: concurrent readers of one span decompress it once", "[span_cache]") {
  SpanCache cache(1u << 20);
  const uint64_t id = cache.NewSourceId();
  std::atomic<int> calls{0};
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    readers.emplace_back([&] {
      auto span = cache.Get(id, 3, 1000, FillWith('x', &calls));
      if (span.ok() && (*span)->size() == 1000 && (*span)->data()[999] == 'x') ++good;
    });
  }
  for (auto& t : readers) t.join();
  CHECK(calls == 1);
  CHECK(good == 8);
  CHECK(cache.stats().misses == 1);
  CHECK(cache.stats().hits == 7);
}

TEST_CASE("span cache: a failed fill is not kept, and its waiters get the error", "[span_cache]") {
  SpanCache cache(1u << 20);
  const uint64_t id = cache.NewSourceId();
  std::atomic<int> calls{0};
  auto fail = [&](char*, size_t) {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return Status::Corrupt("bad span");
  };
  std::thread other([&] { CHECK_FALSE(cache.Get(id, 0, 10, fail).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto r = cache.Get(id, 0, 10, fail);
  other.join();
  CHECK_FALSE(r.ok());
  CHECK(calls >= 1);
  // A later read tries again.
  std::atomic<int> ok_calls{0};
  auto again = cache.Get(id, 0, 10, FillWith('y', &ok_calls));
  REQUIRE(again.ok());
  CHECK(ok_calls == 1);
  CHECK(cache.stats().bytes == 4096);  // the memory held: a page
}

TEST_CASE("span cache: bounded, least recently used evicted first", "[span_cache]") {
  constexpr size_t kSpan = 4096;  // a page: what each span holds
  SpanCache cache(3 * kSpan);
  const uint64_t a = cache.NewSourceId();
  const uint64_t b = cache.NewSourceId();
  std::atomic<int> calls{0};
  auto fill = [&](char* out, size_t size) {
    ++calls;
    std::fill(out, out + size, 'z');
    return Status::Ok();
  };
  REQUIRE(cache.Get(a, 0, kSpan, fill).ok());
  REQUIRE(cache.Get(b, 0, kSpan, fill).ok());  // another source, same index: another span
  REQUIRE(cache.Get(a, 1, kSpan, fill).ok());
  CHECK(calls == 3);
  REQUIRE(cache.Get(a, 0, kSpan, fill).ok());  // a hit: now the most recent
  REQUIRE(cache.Get(a, 2, kSpan, fill).ok());  // evicts (b, 0), the least recent
  CHECK(cache.stats().bytes <= 3 * kSpan);
  CHECK(cache.stats().evictions == 1);
  calls = 0;
  REQUIRE(cache.Get(a, 0, kSpan, fill).ok());
  CHECK(calls == 0);
  REQUIRE(cache.Get(b, 0, kSpan, fill).ok());
  CHECK(calls == 1);
  CHECK(cache.max_span() == 3 * kSpan / 2);
}

}  // namespace
}  // namespace layerfs
