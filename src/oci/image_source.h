// ImageSource: the files of an image, wherever they are stored.
//
// An image is a directory (an OCI layout, or an extracted `docker save`) or an uncompressed tar
// archive of one (`docker save -o image.tar`, `podman save --format oci-archive`). Either way
// layerfs needs "the bytes of the file at this relative path", and must never be led outside the
// image by a path from a manifest ("../", absolute paths, symlinks pointing out).
#ifndef LAYERFS_OCI_IMAGE_SOURCE_H_
#define LAYERFS_OCI_IMAGE_SOURCE_H_

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "blob/blob_range.h"
#include "layerfs/status.h"

namespace layerfs {

class ImageSource {
 public:
  virtual ~ImageSource() = default;

  // The file at `path` (relative to the image root, '/'-separated). Paths that leave the image,
  // directly or through symlinks, are refused.
  virtual Result<BlobRange> Open(std::string_view path) const = 0;
  virtual bool Exists(std::string_view path) const = 0;
  // How `path` is named in messages.
  virtual std::string Describe(std::string_view path) const = 0;
  // The image itself, as the user named it.
  virtual const std::string& location() const = 0;

  // Reads a whole file of at most `max_size` bytes (manifests, configs).
  virtual Result<std::string> ReadSmall(std::string_view path, size_t max_size) const;

  // Opens a directory image.
  static Result<std::unique_ptr<ImageSource>> OpenDirectory(const std::string& dir);
  // Opens a tar archive image.
  static Result<std::unique_ptr<ImageSource>> OpenArchive(const std::string& file);
};

}  // namespace layerfs

#endif  // LAYERFS_OCI_IMAGE_SOURCE_H_
