// Decoding a compressed layer from one of its checkpoints (blob/checkpoints.h): the read side of
// serving gzip and zstd layers in place.
//
// gzip is inflated with ISA-L where layerfs was built with it (about twice zlib's speed on layer
// data; BENCHMARKS.md), else with zlib; both start mid-byte from the checkpoint's bits and are
// primed with its window.
#ifndef LAYERFS_BLOB_SPAN_DECODER_H_
#define LAYERFS_BLOB_SPAN_DECODER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "blob/byte_source.h"
#include "index/format.h"
#include "layerfs/status.h"

namespace layerfs {

enum class Inflater { kZlib, kIsal };

// Whether this build has ISA-L.
bool HaveIsal();
// ISA-L where built with it, unless LAYERFS_INFLATE=zlib is set.
Inflater DefaultInflater();
std::string_view InflaterName(Inflater i);

struct CheckpointRef {
  uint64_t out = 0;
  uint64_t in = 0;
  uint8_t bits = 0;
  uint16_t window_raw = 0;
  std::string_view window;  // compressed with zstd
};

// Decodes `blob` (compressed with `codec`) from checkpoint `cp`, reading it no further than
// `in_end`: skips `skip` bytes of output, then writes exactly `size` bytes into `out`. Data that
// ends early or does not decode is an error naming the blob.
Status DecodeFrom(const ByteSource& blob, IndexCodec codec, Inflater inflater,
                  const CheckpointRef& cp, uint64_t in_end, uint64_t skip, char* out, size_t size);

}  // namespace layerfs

#endif  // LAYERFS_BLOB_SPAN_DECODER_H_
