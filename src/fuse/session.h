// A FUSE session serving one Filesystem: made, mounted (or handed a connection someone else
// mounted), served until it ends, and unmounted.
#ifndef LAYERFS_FUSE_SESSION_H_
#define LAYERFS_FUSE_SESSION_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fuse/filesystem.h"
#include "layerfs/status.h"

struct fuse_session;

namespace layerfs {

struct MountOptions {
  std::string mountpoint;
  std::string fsname;                     // shown in /proc/mounts
  std::vector<std::string> fuse_options;  // -o options passed through to FUSE
  bool foreground = false;
  bool debug = false;  // FUSE request log on stderr (implies foreground)
  bool single_thread = false;
  unsigned max_threads = 0;  // 0: libfuse's default
  // The mount's read-ahead in KiB (its bdi's read_ahead_kb), set where permitted (as root);
  // 0 keeps the kernel's default of 128 KiB. Larger read-ahead means fewer, larger READ requests
  // for a file read front to back: the first read of a large file gets faster.
  unsigned readahead_kb = 1024;
  // Where to write the counts of the requests served (JSON, see request_stats.h) when the mount
  // ends; empty: nowhere.
  std::string stats_path;
  // Called once the mount is served by the process that will serve it (after a daemon forked):
  // work that needs threads of its own starts there.
  std::function<void()> on_serving;
};

// The descriptor N of a mountpoint written /dev/fd/N: a FUSE connection (an open /dev/fuse) that
// the caller has mounted itself, as mount.fuse3 and container runtimes hand one over; -1 for any
// other path.
int HandedConnection(const std::string& mountpoint);

class Session {
 public:
  // Makes the session for `fs` (which must outlive it) with the FUSE options of `options`.
  static Result<std::unique_ptr<Session>> Create(Filesystem* fs, const MountOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Mounts on options.mountpoint, or takes the connection /dev/fd/N it names (which is then not
  // this session's to unmount). Nothing is left mounted after an error.
  Status Mount();
  // Forks the daemon unless serving in the foreground (see daemon.h). Only the daemon returns OK.
  Status Daemonize();
  // Serves requests until the mount goes away or SIGINT/SIGTERM/SIGHUP arrives, then unmounts
  // what Mount() mounted.
  Status Loop();

  // The FUSE connection's descriptor.
  int fd() const;

 private:
  Session(fuse_session* se, const MountOptions& options) : se_(se), options_(options) {}

  fuse_session* se_;
  MountOptions options_;
  bool signals_ = false;
  bool mounted_ = false;
};

// Create, Mount, Daemonize and Loop: serves `fs` as `options` say. Errors before the mount is in
// place are returned; nothing is left mounted after an error.
Status ServeMount(Filesystem* fs, const MountOptions& options);

}  // namespace layerfs

#endif  // LAYERFS_FUSE_SESSION_H_
