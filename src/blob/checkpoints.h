// Checkpoints: the places where a compressed layer can be entered without decompressing what
// comes before, found during the one indexing pass and kept in the layer's index (format.h).
//
// A gzip checkpoint sits at a deflate block boundary (the zran technique): the bit position in
// the blob where the block starts, and the 32 KiB of output before it that back-references may
// reach. A zstd checkpoint sits at a frame start and needs neither. Every gzip member start is a
// checkpoint, so decoding from one never crosses into the next member.
#ifndef LAYERFS_BLOB_CHECKPOINTS_H_
#define LAYERFS_BLOB_CHECKPOINTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "index/format.h"

namespace layerfs {

// The uncompressed distance between checkpoints when none is asked for. At 1 MiB a random read
// decompresses 0.5 MiB on average, and the checkpoints' windows take about 1% of the uncompressed
// size (BENCHMARKS.md, "Compressed layers in place").
inline constexpr uint64_t kDefaultSpan = 1u << 20;
inline constexpr uint64_t kMinSpan = 64u << 10;
inline constexpr uint64_t kMaxSpan = 64u << 20;

// The span used for `asked` (0: the default), within the bounds.
inline uint64_t EffectiveSpan(uint64_t asked) {
  return asked == 0         ? kDefaultSpan
         : asked < kMinSpan ? kMinSpan
         : asked > kMaxSpan ? kMaxSpan
                            : asked;
}

struct Checkpoint {
  uint64_t out = 0;
  uint64_t in = 0;
  uint8_t bits = 0;
  uint16_t window_raw = 0;  // size of the window before compression
  std::string window;       // compressed with zstd; empty when none is needed
};

struct CheckpointList {
  IndexCodec codec = kIndexCodecNone;
  uint64_t span = 0;
  std::vector<Checkpoint> points;

  // The longest run of uncompressed bytes between two checkpoints (or the last one and `end`).
  uint64_t LongestSpan(uint64_t end) const {
    uint64_t longest = 0;
    for (size_t i = 0; i < points.size(); ++i) {
      uint64_t next = i + 1 < points.size() ? points[i + 1].out : end;
      if (next > points[i].out && next - points[i].out > longest) longest = next - points[i].out;
    }
    return longest;
  }
};

}  // namespace layerfs

#endif  // LAYERFS_BLOB_CHECKPOINTS_H_
