// Mounting a Filesystem and serving it until it is unmounted or signalled.
#ifndef LAYERFS_FUSE_SESSION_H_
#define LAYERFS_FUSE_SESSION_H_

#include <string>
#include <vector>

#include "fuse/filesystem.h"
#include "layerfs/status.h"

namespace layerfs {

struct MountOptions {
  std::string mountpoint;
  std::string fsname;                     // shown in /proc/mounts
  std::vector<std::string> fuse_options;  // -o options passed through to FUSE
  bool foreground = false;
  bool debug = false;                     // FUSE request log on stderr (implies foreground)
  bool single_thread = false;
  unsigned max_threads = 0;               // 0: libfuse's default
  // The mount's read-ahead in KiB (its bdi's read_ahead_kb), set where permitted (as root);
  // 0 keeps the kernel's default of 128 KiB. Larger read-ahead means fewer, larger READ requests
  // for a file read front to back: the first read of a large file gets faster.
  unsigned readahead_kb = 1024;
  // Where to write the counts of the requests served (JSON, see request_stats.h) when the mount
  // ends; empty: nowhere.
  std::string stats_path;
};

// Checks that `mountpoint` can be mounted on: an existing directory that is not already a mount
// point (a stale FUSE mount gets its own message).
Status CheckMountpoint(const std::string& mountpoint);

// Whether this process is root of the initial user namespace, and so may mount, chown and mknod
// as it likes; false for an ordinary user and for root of a user namespace (`unshare -Ur`).
bool IsHostRoot();

// Checks, before any indexing work, that this process may mount with `options`: /dev/fuse
// exists and opens; and for an ordinary user, that a setuid-root fusermount3 is installed, that
// the mountpoint is theirs to mount on (as fusermount3 requires), and that `allow_other` or
// `allow_root` is allowed by user_allow_other in /etc/fuse.conf. Each problem is one clear error.
Status CheckCanMount(const MountOptions& options);

// Mounts `fs`, detaches unless `foreground` (the mount is in place when this process's parent
// returns), and serves requests until unmounted or SIGINT/SIGTERM/SIGHUP. Errors before the mount
// is in place are returned; nothing is left mounted after an error.
Status ServeMount(Filesystem* fs, const MountOptions& options);

// Unmounts a layerfs mount (and refuses any other mount, touching nothing): umount2 when
// privileged, else fusermount3 -u. A busy mount is an EBUSY error that says so.
Status Unmount(const std::string& mountpoint, bool lazy);

}  // namespace layerfs

#endif  // LAYERFS_FUSE_SESSION_H_
