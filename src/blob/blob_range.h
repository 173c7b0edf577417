// BlobRange: where the bytes of one blob are: a range of an open file.
//
// A blob is a file of its own (an OCI layout's blobs/sha256/<hex>, a docker-save layer tar) or a
// member of an uncompressed archive (a layer inside a `docker save` image.tar), read in place at
// its offset. Several blobs may share one file, hence the shared descriptor.
#ifndef LAYERFS_BLOB_BLOB_RANGE_H_
#define LAYERFS_BLOB_BLOB_RANGE_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>

#include "base/unique_fd.h"
#include "layerfs/status.h"

namespace layerfs {

// What identifies a file's current content cheaply: if any of these changed, so may the bytes.
struct FileIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;

  static FileIdentity Of(const struct stat& st);
  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

struct BlobRange {
  std::shared_ptr<UniqueFd> file;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::string name;       // for messages: "DIR/blobs/sha256/ab12…" or "image.tar:ab12….tar"
  FileIdentity identity;  // of the containing file, when the range was opened

  int fd() const { return file->get(); }
};

// The whole of an open regular file as a blob range.
Result<BlobRange> WholeFileRange(UniqueFd fd, const std::string& name);

}  // namespace layerfs

#endif  // LAYERFS_BLOB_BLOB_RANGE_H_
