// One sequential pass over a layer tar with libarchive: every header, with where its data lies.
//
// The pass reads the blob exactly once, front to back. While it does, it can hash the blob as
// stored and the uncompressed tar (for digest verification), and, for a compressed blob, record
// the checkpoints from which it can be read in place later, or write the uncompressed tar to a
// file to be read from that copy.
#ifndef LAYERFS_TAR_TAR_READER_H_
#define LAYERFS_TAR_TAR_READER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "layerfs/status.h"

namespace layerfs {

class Sha256;
struct CheckpointList;

enum class Compression { kNone, kGzip, kZstd };
std::string_view CompressionName(Compression c);

enum class TarEntryType { kRegular, kDirectory, kSymlink, kHardlink, kCharDevice, kBlockDevice,
                          kFifo, kSocket };

struct SparseRun {
  uint64_t logical;   // offset in the file
  uint64_t length;
  uint64_t physical;  // offset of these bytes in the uncompressed tar
};

// One tar header as read. Views point into libarchive's buffers and are valid only during the
// callback that receives the entry.
struct TarEntry {
  std::string_view path;         // as stored (not normalised)
  TarEntryType type;
  uint32_t mode;                 // permission bits (07777)
  uint32_t uid;
  uint32_t gid;
  int64_t mtime_sec;
  uint32_t mtime_nsec;
  uint64_t size;                 // regular files: logical size
  uint64_t data_offset;          // regular files: offset of the data in the uncompressed tar
  std::string_view link_target;  // symlink target, or hardlink target path (not normalised)
  uint32_t rdev_major;
  uint32_t rdev_minor;
  std::vector<std::pair<std::string_view, std::string_view>> xattrs;
  bool is_sparse = false;         // a sparse file (its map may hold no data at all)
  std::vector<SparseRun> sparse;  // its data runs, in file order
  uint64_t index;                 // position of the header in the tar, counting from 0
};

struct TarReadOptions {
  Compression compression = Compression::kNone;
  Sha256* blob_hash = nullptr;  // receives every byte of the blob as stored
  Sha256* tar_hash = nullptr;   // receives every byte of the uncompressed tar
  int copy_fd = -1;             // compressed blobs: the uncompressed tar is written here
  // Compressed blobs: the checkpoints found (blob/checkpoints.h), about every `span` bytes of the
  // uncompressed tar (0: the default).
  CheckpointList* checkpoints = nullptr;
  uint64_t span = 0;
  // Called after each block of the blob is read, with the bytes of it read so far (progress
  // reports for large layers). Runs on the reading thread.
  std::function<void(uint64_t blob_bytes)> progress;
};

struct TarReadStats {
  uint64_t blob_bytes = 0;  // bytes of the blob read (all of it)
  uint64_t tar_bytes = 0;   // bytes of uncompressed tar
  uint64_t entries = 0;
};

using TarVisitor = std::function<Status(const TarEntry&)>;

// Reads the `length` bytes of `fd` at `offset` as a tar (compressed as `options` says) and calls
// `visit` for every entry in order. Errors name the entry and its offset; `name` names the blob.
Result<TarReadStats> ReadTar(int fd, uint64_t offset, uint64_t length, std::string_view name,
                             const TarReadOptions& options, const TarVisitor& visit);

// Sets the process locale so that libarchive reports UTF-8 names as they are (see NOTES: in the
// C locale it drops them). Call once at start-up, before any thread starts.
void InitArchiveLocale();

}  // namespace layerfs

#endif  // LAYERFS_TAR_TAR_READER_H_
