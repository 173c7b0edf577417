// The FUSE low-level operations of a layerfs mount.
#ifndef LAYERFS_FUSE_OPS_H_
#define LAYERFS_FUSE_OPS_H_

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

namespace layerfs {

// The operation table of every mount; the session's userdata is a Filesystem*.
const fuse_lowlevel_ops& LayerfsOps();

}  // namespace layerfs

#endif  // LAYERFS_FUSE_OPS_H_
