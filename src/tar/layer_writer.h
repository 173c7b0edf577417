// LayerWriter: writes one layer tar (PAX), optionally compressed, in one pass, computing its
// diff_id (sha256 of the tar) and the digest of the blob as stored.
#ifndef LAYERFS_TAR_LAYER_WRITER_H_
#define LAYERFS_TAR_LAYER_WRITER_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "layerfs/digest.h"
#include "layerfs/status.h"
#include "tar/tar_reader.h"

namespace layerfs {

// One tar header.
struct TarItem {
  std::string path;    // relative, '/'-separated, without a leading or trailing '/'
  mode_t mode = 0;     // file type and permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  struct timespec mtime = {};
  uint64_t size = 0;   // regular files: the bytes WriteData must then supply
  dev_t rdev = 0;      // character and block devices
  std::string link;    // symlink target; or, with `hardlink`, the path this one links to
  bool hardlink = false;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

struct WrittenLayer {
  Digest diff_id;       // sha256 of the uncompressed tar
  Digest blob_digest;   // sha256 of the bytes written (the same when uncompressed)
  uint64_t blob_size = 0;
};

class LayerWriter {
 public:
  ~LayerWriter();
  // Writes to `fd` (which it does not own), compressed with `compression`.
  static Result<std::unique_ptr<LayerWriter>> Create(int fd, Compression compression);

  Status Add(const TarItem& item);
  // The content of the regular file just added, in order; `item.size` bytes in all.
  Status WriteData(const void* data, size_t size);
  Result<WrittenLayer> Finish();

  struct State;

 private:
  LayerWriter() = default;
  std::unique_ptr<State> state_;
};

}  // namespace layerfs

#endif  // LAYERFS_TAR_LAYER_WRITER_H_
