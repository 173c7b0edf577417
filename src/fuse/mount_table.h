// The mount table of this process's mount namespace (/proc/self/mountinfo).
#ifndef LAYERFS_FUSE_MOUNT_TABLE_H_
#define LAYERFS_FUSE_MOUNT_TABLE_H_

#include <istream>
#include <optional>
#include <string>

namespace layerfs {

// One line of /proc/self/mountinfo, unescaped.
struct MountEntry {
  std::string device;  // "major:minor"
  std::string point;   // absolute mount point
  std::string fstype;  // "fuse.layerfs" for a layerfs mount, "tmpfs", ...
  std::string source;  // for a layerfs mount, the image it serves

  bool is_layerfs() const { return fstype == "fuse.layerfs"; }
};

// The mount on top at the absolute path `path`, if something is mounted there. Asking costs a
// mount nothing: a stat of a FUSE mount point would wait for its daemon.
std::optional<MountEntry> FindMount(const std::string& path);
// The same, in the mountinfo text `in`.
std::optional<MountEntry> FindMountIn(std::istream& in, const std::string& path);

// `path` made absolute without looking at its last component (which may be a mount point whose
// daemon is gone): the real path of its directory, then its name.
std::string AbsoluteMountPath(const std::string& path);

}  // namespace layerfs

#endif  // LAYERFS_FUSE_MOUNT_TABLE_H_
