// clang-format off
// child_table.h uses size_t without including <cstddef>; it compiles only after a header that
// declares size_t.
#include <cstddef>
#include "base/child_table.h"
// clang-format on

#include <catch2/catch.hpp>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "base/hash.h"

namespace layerfs {
namespace {

// A table of (dir, name hash) keys with their ids, as the index builder keeps it; `owner[id]` is
// the key each id was inserted under, which is what Find's match callback confirms.
struct KeyedTable {
  ChildTable table;
  std::vector<uint64_t> owner;

  uint32_t Add(uint64_t key) {
    uint32_t id = static_cast<uint32_t>(owner.size());
    owner.push_back(key);
    table.Insert(key, id);
    return id;
  }
  uint32_t Find(uint64_t key) const {
    return table.Find(key, [&](uint32_t id) { return owner[id] == key; });
  }
};

TEST_CASE("ChildTable finds every id it was given, across growth", "[base]") {
  KeyedTable t;
  const size_t initial_capacity = t.table.capacity();
  std::vector<uint64_t> keys;
  for (uint32_t dir = 0; dir < 100; ++dir) {
    for (uint32_t name = 0; name < 50; ++name)
      keys.push_back(ChildKey(dir, NameHash("name" + std::to_string(name))));
  }
  for (uint64_t key : keys) t.Add(key);
  CHECK(t.table.size() == keys.size());
  CHECK(t.table.capacity() > initial_capacity);
  CHECK(t.table.capacity() >= 2 * keys.size());  // load stays at or below 1/2
  for (uint32_t id = 0; id < keys.size(); ++id) REQUIRE(t.Find(keys[id]) == id);
  CHECK(t.Find(ChildKey(100, NameHash("name0"))) == ChildTable::kNone);
}

TEST_CASE("ChildTable tells apart ids whose keys share a tag through the match callback",
          "[base]") {
  KeyedTable t;
  // Same upper 32 bits (the tag), so the same home slot; only the lower bits differ.
  const uint64_t a = 0x1234567800000001ULL;
  const uint64_t b = 0x1234567800000002ULL;
  const uint64_t c = 0x1234567800000003ULL;
  uint32_t ia = t.Add(a);
  uint32_t ib = t.Add(b);
  CHECK(t.Find(a) == ia);
  CHECK(t.Find(b) == ib);
  CHECK(t.Find(c) == ChildTable::kNone);
  // With a callback that accepts anything, the first candidate in probe order comes back.
  CHECK(t.table.Find(c, [](uint32_t) { return true; }) == ia);
}

TEST_CASE("ChildTable::Replace swaps one id for another under the same key", "[base]") {
  KeyedTable t;
  const uint64_t key = ChildKey(7, NameHash("bin"));
  const uint64_t other = ChildKey(7, NameHash("lib"));
  uint32_t old_id = t.Add(key);
  uint32_t other_id = t.Add(other);
  t.owner.push_back(key);  // id 2 will take over `key`
  const uint32_t new_id = 2;
  CHECK(t.table.Replace(
      key, [&](uint32_t id) { return id == old_id; }, new_id));
  CHECK(t.table.Find(key, [&](uint32_t id) { return id == old_id; }) == ChildTable::kNone);
  CHECK(t.table.Find(key, [&](uint32_t id) { return id == new_id; }) == new_id);
  CHECK(t.Find(other) == other_id);
  CHECK(t.table.size() == 2);
  // Nothing to replace: the table is unchanged.
  CHECK_FALSE(t.table.Replace(
      ChildKey(8, NameHash("bin")), [](uint32_t) { return true; }, 9));
  CHECK(t.table.size() == 2);
}

TEST_CASE("ChildTable::Compact shrinks the table and keeps every id findable", "[base]") {
  KeyedTable t;
  t.table.Reserve(100000);
  const size_t reserved = t.table.capacity();
  CHECK(reserved >= 200000);
  std::vector<uint64_t> keys;
  for (uint32_t i = 0; i < 1000; ++i) keys.push_back(ChildKey(i % 13, NameHash(std::to_string(i))));
  for (uint64_t key : keys) t.Add(key);
  t.table.Compact();
  CHECK(t.table.capacity() < reserved);
  CHECK(t.table.capacity() >= 2 * keys.size());
  for (uint32_t id = 0; id < keys.size(); ++id) REQUIRE(t.Find(keys[id]) == id);
}

TEST_CASE("ChildKey spreads equal names in different directories", "[base]") {
  const uint32_t h = NameHash("lib");
  std::unordered_map<uint32_t, int> tags;
  for (uint32_t dir = 0; dir < 4096; ++dir) ++tags[ChildTable::Tag(ChildKey(dir, h))];
  // With a 32-bit tag, 4096 directories should essentially never share one.
  CHECK(tags.size() >= 4090);
  CHECK(ChildKey(1, h) != ChildKey(2, h));
  CHECK(ChildKey(1, NameHash("lib")) != ChildKey(1, NameHash("lib64")));
}

}  // namespace
}  // namespace layerfs
