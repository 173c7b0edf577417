// StreamScanner: decompresses a layer blob front to back for the indexing pass, and records the
// checkpoints (blob/checkpoints.h) from which it can later be read at random.
//
// gzip is decoded with zlib, which stops at deflate block boundaries (Z_BLOCK) where the other
// inflaters cannot; it verifies every member's CRC and length, accepts concatenated members and
// zero padding after the last one. zstd is decoded frame by frame with libzstd.
#ifndef LAYERFS_BLOB_STREAM_SCAN_H_
#define LAYERFS_BLOB_STREAM_SCAN_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "blob/checkpoints.h"
#include "layerfs/status.h"
#include "tar/tar_reader.h"

namespace layerfs {

class StreamScanner {
 public:
  // Gives the blob's next block: its length, 0 at the end of the blob, -1 on an error the caller
  // keeps (a failed read).
  using Pull = std::function<ssize_t(const void** block)>;

  // A scanner of a blob compressed with `c` (gzip or zstd) that records a checkpoint about every
  // `span` bytes of output. `name` names the blob in errors.
  static std::unique_ptr<StreamScanner> Make(Compression c, uint64_t span, std::string name,
                                             Pull pull);
  virtual ~StreamScanner() = default;

  // The next block of uncompressed output: its length, 0 at the end of the stream, or -1 with
  // error() set (or, when the pull failed, with error() ok). The block is valid until the next
  // call.
  virtual ssize_t Next(const void** out) = 0;

  const Status& error() const { return error_; }
  // All checkpoints once Next() has returned 0; those at or past the end of the output (an empty
  // last member) are dropped then.
  const CheckpointList& checkpoints() const { return points_; }
  uint64_t output_bytes() const { return out_total_; }

 protected:
  StreamScanner(IndexCodec codec, uint64_t span, std::string name, Pull pull);
  // Records a checkpoint at the current output position, unless the last one is nearer than the
  // span and `force` is false. `window` (the output before it) may be empty.
  void Checkpoint(uint64_t in, uint8_t bits, const uint8_t* window, size_t window_size, bool force);
  // Drops checkpoints at or past the end of the output.
  void Finish();

  std::string name_;
  Pull pull_;
  Status error_;
  CheckpointList points_;
  uint64_t out_total_ = 0;
};

}  // namespace layerfs

#endif  // LAYERFS_BLOB_STREAM_SCAN_H_
