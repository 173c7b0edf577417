// Hashing for the index and merged-tree hash tables. The only user of <xxhash.h>.
#ifndef LAYERFS_BASE_HASH_H_
#define LAYERFS_BASE_HASH_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace layerfs {

// 64-bit XXH3 of `data`.
uint64_t Hash64(const void* data, size_t size, uint64_t seed = 0);
inline uint64_t Hash64(std::string_view s, uint64_t seed = 0) {
  return Hash64(s.data(), s.size(), seed);
}

// 64-bit XXH3 of the concatenation of two buffers, without copying them.
uint64_t Hash64Concat(const void* a, size_t a_size, const void* b, size_t b_size);

// The 32-bit name hash stored in index entries and merged-tree nodes.
inline uint32_t NameHash(std::string_view name) { return static_cast<uint32_t>(Hash64(name)); }

// The hash-table key of a (directory, name) pair: mixes the directory's number into the name's hash
// so that equal names in different directories spread over the table.
inline uint64_t ChildKey(uint32_t dir, uint32_t name_hash) {
  uint64_t x = (static_cast<uint64_t>(dir) << 32) | name_hash;
  // splitmix64 finaliser: cheap, and every input bit affects every output bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace layerfs

#endif  // LAYERFS_BASE_HASH_H_
