// What can be mounted, and by whom: the checks `layerfs mount` makes before any indexing work, so
// that a mount that cannot happen fails at once with one clear error.
#ifndef LAYERFS_FUSE_PREFLIGHT_H_
#define LAYERFS_FUSE_PREFLIGHT_H_

#include <string>
#include <vector>

#include "layerfs/status.h"

namespace layerfs {

// Checks that `mountpoint` can be mounted on: an existing directory that is not already a mount
// point (a stale FUSE mount gets its own message).
Status CheckMountpoint(const std::string& mountpoint);

// Whether this process is root of the initial user namespace, and so may mount, chown and mknod
// as it likes; false for an ordinary user and for root of a user namespace (`unshare -Ur`).
bool IsHostRoot();

// Checks that this process may mount on `mountpoint` with the FUSE options `fuse_options`:
// /dev/fuse exists and opens; and for an ordinary user, that a setuid-root fusermount3 is
// installed, that the mountpoint is theirs to mount on (as fusermount3 requires), and that
// `allow_other` or `allow_root` is allowed by user_allow_other in /etc/fuse.conf.
Status CheckCanMount(const std::string& mountpoint, const std::vector<std::string>& fuse_options);

}  // namespace layerfs

#endif  // LAYERFS_FUSE_PREFLIGHT_H_
