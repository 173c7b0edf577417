// Unmounting a layerfs mount, and only a layerfs mount.
#ifndef LAYERFS_FUSE_UNMOUNT_H_
#define LAYERFS_FUSE_UNMOUNT_H_

#include <string>

#include "layerfs/status.h"

namespace layerfs {

// Unmounts a layerfs mount (and refuses any other mount, touching nothing): umount2 when
// privileged, else fusermount3 -u. A busy mount is an EBUSY error that says so.
Status Unmount(const std::string& mountpoint, bool lazy);

}  // namespace layerfs

#endif  // LAYERFS_FUSE_UNMOUNT_H_
