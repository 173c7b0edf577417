// Little-endian fixed-width integers, for the on-disk index format.
//
// The index is mapped and read in place, so its structs are laid out little-endian with natural
// alignment; on the little-endian hosts layerfs targets these are plain loads and stores.
#ifndef LAYERFS_BASE_CODING_H_
#define LAYERFS_BASE_CODING_H_

#include <bit>
#include <cstdint>
#include <cstring>

namespace layerfs {

static_assert(std::endian::native == std::endian::little,
              "the index format is little-endian and read in place");

// Round `n` up to a multiple of `align` (a power of two).
constexpr uint64_t AlignUp(uint64_t n, uint64_t align) { return (n + align - 1) & ~(align - 1); }

// Overflow-checked a + b <= limit.
constexpr bool FitsWithin(uint64_t offset, uint64_t length, uint64_t limit) {
  return offset <= limit && length <= limit - offset;
}

}  // namespace layerfs

#endif  // LAYERFS_BASE_CODING_H_
