// Where the bytes of a regular file entry are: runs of the layer's uncompressed tar, and holes.
#ifndef LAYERFS_INDEX_LAYER_READER_H_
#define LAYERFS_INDEX_LAYER_READER_H_

#include <cstdint>
#include <vector>

#include "index/layer_store.h"

namespace layerfs {

struct ReadSegment {
  uint64_t pos;  // offset in the layer's data file (unused for holes)
  size_t length;
  bool hole;     // reads as zeros
};

// Plans a read of up to `size` bytes at `offset` of regular entry `e` of `layer`: appends the
// segments, in order, to `out` and returns their total length (0 at or past the end of file).
size_t PlanRead(const Layer& layer, const IndexEntry& e, uint64_t offset, size_t size,
                std::vector<ReadSegment>* out);

// Reads through PlanRead with pread into `buf`; a blob shorter than its index says is EIO.
Result<size_t> ReadEntry(const Layer& layer, const IndexEntry& e, uint64_t offset, char* buf,
                         size_t size);

}  // namespace layerfs

#endif  // LAYERFS_INDEX_LAYER_READER_H_
