// ChildTable: an open-addressing hash table from (directory, name) keys to 32-bit ids.
//
// The index builder and the merged tree both need "which entry is NAME in directory D" in one
// probe. The table stores, per slot, the upper 32 bits of the key (its tag) and the id; the tag
// also picks the slot, so the table can grow without asking for keys again. Several ids may share a
// key (hash collisions); Find() asks the caller to confirm a candidate. Ids are never removed, but
// an id can be replaced by another for the same key.
#ifndef LAYERFS_BASE_CHILD_TABLE_H_
#define LAYERFS_BASE_CHILD_TABLE_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace layerfs {

class ChildTable {
 public:
  static constexpr uint32_t kNone = 0xffffffffu;

  explicit ChildTable(size_t expected = 0) { Reserve(expected); }

  // Makes room for `n` ids without growing.
  void Reserve(size_t n) {
    size_t want = std::bit_ceil(n * 2 + 16);
    if (want > slots_.size()) Rehash(want);
  }

  // The id stored under `key` for which match(id) is true, or kNone.
  template <typename Match>
  uint32_t Find(uint64_t key, Match&& match) const {
    const uint32_t tag = Tag(key);
    const size_t mask = slots_.size() - 1;
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
      const uint64_t slot = slots_[i];
      if (slot == 0) return kNone;
      if (static_cast<uint32_t>(slot >> 32) == tag) {
        const uint32_t id = static_cast<uint32_t>(slot) - 1;
        if (match(id)) return id;
      }
    }
  }

  // Adds `id` under `key`. REQUIRES: id < kNone.
  void Insert(uint64_t key, uint32_t id) {
    if ((size_ + 1) * 2 > slots_.size()) Rehash(slots_.size() * 2);
    Place(Tag(key), id);
    ++size_;
  }

  // Replaces the id under `key` that match(id) accepts with `new_id`; returns whether one did.
  template <typename Match>
  bool Replace(uint64_t key, Match&& match, uint32_t new_id) {
    const uint32_t tag = Tag(key);
    const size_t mask = slots_.size() - 1;
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
      const uint64_t slot = slots_[i];
      if (slot == 0) return false;
      if (static_cast<uint32_t>(slot >> 32) == tag && match(static_cast<uint32_t>(slot) - 1)) {
        slots_[i] = (static_cast<uint64_t>(tag) << 32) | (static_cast<uint64_t>(new_id) + 1);
        return true;
      }
    }
  }

  // Shrinks the table to the smallest capacity that keeps the load at or below 1/2.
  void Compact() {
    size_t want = std::bit_ceil(size_ * 2 + 16);
    if (want < slots_.size()) Rehash(want);
  }

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  size_t memory_bytes() const { return slots_.capacity() * sizeof(uint64_t); }

  static uint32_t Tag(uint64_t key) { return static_cast<uint32_t>(key >> 32); }

 private:
  void Place(uint32_t tag, uint32_t id) {
    const size_t mask = slots_.size() - 1;
    size_t i = tag & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = (static_cast<uint64_t>(tag) << 32) | (static_cast<uint64_t>(id) + 1);
  }

  void Rehash(size_t capacity) {
    std::vector<uint64_t> old;
    old.swap(slots_);
    slots_.assign(capacity, 0);
    for (uint64_t slot : old) {
      if (slot != 0) Place(static_cast<uint32_t>(slot >> 32), static_cast<uint32_t>(slot) - 1);
    }
  }

  std::vector<uint64_t> slots_ = std::vector<uint64_t>(16, 0);
  size_t size_ = 0;
};

}  // namespace layerfs

#endif  // LAYERFS_BASE_CHILD_TABLE_H_
