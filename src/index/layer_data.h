// The one reader of a layer's bytes: where the bytes of a regular file entry are (runs of the
// layer's uncompressed tar, and holes), reading them, seeking over holes, and copying them out.
// Everything goes through the layer's ByteSource (blob/byte_source.h); positions are offsets in
// the uncompressed tar, whatever holds it.
#ifndef LAYERFS_INDEX_LAYER_DATA_H_
#define LAYERFS_INDEX_LAYER_DATA_H_

#include <cstdint>
#include <vector>

#include "index/layer_store.h"

namespace layerfs {

struct ReadSegment {
  uint64_t pos;  // offset in the layer's uncompressed tar (unused for holes)
  size_t length;
  bool hole;     // reads as zeros
};

// Plans a read of up to `size` bytes at `offset` of regular entry `e` of `layer`: appends the
// segments, in order, to `out` and returns their total length (0 at or past the end of file).
size_t PlanRead(const Layer& layer, const IndexEntry& e, uint64_t offset, size_t size,
                std::vector<ReadSegment>* out);

// Reads through PlanRead into `buf`; a blob shorter than its index says is EIO.
Result<size_t> ReadEntry(const Layer& layer, const IndexEntry& e, uint64_t offset, char* buf,
                         size_t size);

// lseek(SEEK_DATA or SEEK_HOLE) at `offset` of regular entry `e` of `index`: the offset found, or
// ENXIO (at or past the end, or no data after `offset`), or EINVAL (another `whence`).
Result<uint64_t> SeekEntry(const LayerIndex& index, const IndexEntry& e, uint64_t offset,
                           int whence);

// Writes the content of regular entry `e` into `out` from offset 0 and sets its size to the
// entry's; holes are not written, so they stay holes in a fresh file.
Status CopyEntry(const Layer& layer, const IndexEntry& e, int out);

}  // namespace layerfs

#endif  // LAYERFS_INDEX_LAYER_DATA_H_
