#include "base/hash.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace layerfs {

uint64_t Hash64(const void* data, size_t size, uint64_t seed) {
  return XXH3_64bits_withSeed(data, size, seed);
}

uint64_t Hash64Concat(const void* a, size_t a_size, const void* b, size_t b_size) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, a, a_size);
  XXH3_64bits_update(&state, b, b_size);
  return XXH3_64bits_digest(&state);
}

}  // namespace layerfs
