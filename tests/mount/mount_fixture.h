// A real layerfs mount for tests: an image written from tars, mounted by the layerfs binary built
// alongside (LAYERFS_BINARY, or $LAYERFS), unmounted when the object goes away.
#ifndef LAYERFS_TESTS_MOUNT_MOUNT_FIXTURE_H_
#define LAYERFS_TESTS_MOUNT_MOUNT_FIXTURE_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "util/tar_writer.h"

namespace layerfs::testing {

class TestMount {
 public:
  // Writes a docker-save directory of `tars` (bottom first) and mounts it writable with a scratch
  // directory of its own (or `scratch`, when given), passing `extra` arguments through.
  explicit TestMount(std::vector<std::string> tars, std::string scratch = {},
                     std::vector<std::string> extra = {});
  ~TestMount();
  TestMount(const TestMount&) = delete;
  TestMount& operator=(const TestMount&) = delete;

  // A path in the mount ("" is the root).
  std::string P(const std::string& rel) const { return rel.empty() ? mnt_ : mnt_ + "/" + rel; }
  // A path in the scratch directory's upper/.
  std::string Upper(const std::string& rel) const { return scratch_ + "/upper/" + rel; }
  const std::string& scratch() const { return scratch_; }
  const std::string& image_dir() const { return image_; }
  pid_t daemon_pid() const;

  void Unmount();
  void Mount();
  void Remount() {
    Unmount();
    Mount();
  }
  // The sha256 of every layer blob: the image must never change.
  std::vector<std::string> BlobDigests() const;

 private:
  TempDir dir_;
  std::string image_, cache_, mnt_, scratch_;
  std::vector<std::string> extra_;
  bool mounted_ = false;
};

// A kernel file system (`mount -t TYPE -o OPTIONS`) on a directory of its own, unmounted when the
// object goes away: a scratch file system with properties of its own. Needs root.
class KernelMount {
 public:
  KernelMount(const std::string& type, const std::string& options);
  ~KernelMount();
  KernelMount(const KernelMount&) = delete;
  KernelMount& operator=(const KernelMount&) = delete;

  const std::string& path() const { return dir_.path(); }
  std::string Sub(const std::string& name) const { return dir_.Sub(name); }

 private:
  TempDir dir_;
};

// Whether the machine can mount (has /dev/fuse); tests need it.
bool CanMount();
std::string LayerfsBinary();

}  // namespace layerfs::testing

#endif  // LAYERFS_TESTS_MOUNT_MOUNT_FIXTURE_H_
