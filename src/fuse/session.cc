#include "fuse/session.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "fuse/daemon.h"
#include "fuse/mount_table.h"
#include "fuse/ops.h"
#include "fuse/preflight.h"
#include "fuse/request_stats.h"

namespace layerfs {
namespace {

// Sets the read-ahead of a new FUSE mount, before the daemon answers INIT (whose reply the kernel
// takes the smaller of this and max_readahead from). Needs root; without, the default stays.
void SetReadahead(const std::string& mountpoint, unsigned kb) {
  if (kb == 0) return;
  char* real = ::realpath(mountpoint.c_str(), nullptr);
  std::optional<MountEntry> mount = FindMount(real != nullptr ? real : mountpoint);
  std::free(real);
  if (!mount) return;
  std::string path = "/sys/class/bdi/" + mount->device + "/read_ahead_kb";
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    LogDebug("read-ahead left at the kernel's default: {}: {}", path, std::strerror(errno));
    return;
  }
  std::string value = std::to_string(kb);
  if (::write(fd, value.data(), value.size()) < 0) {
    LogDebug("read-ahead left at the kernel's default: {}: {}", path, std::strerror(errno));
  }
  ::close(fd);
}

}  // namespace

int HandedConnection(const std::string& mountpoint) {
  constexpr std::string_view kPrefix = "/dev/fd/";
  if (mountpoint.rfind(kPrefix, 0) != 0 || mountpoint.size() == kPrefix.size()) return -1;
  int fd = 0;
  for (size_t i = kPrefix.size(); i < mountpoint.size(); ++i) {
    const char c = mountpoint[i];
    if (c < '0' || c > '9' || fd > 100000000) return -1;
    fd = fd * 10 + (c - '0');
  }
  return fd;
}

Result<std::unique_ptr<Session>> Session::Create(Filesystem* fs, const MountOptions& options) {
  std::string mount_opts = "fsname=" + options.fsname + ",subtype=layerfs,default_permissions";
  if (fs->options().read_only) mount_opts += ",ro";
  std::vector<std::string> argv_storage = {"layerfs", "-o", mount_opts};
  for (const std::string& o : options.fuse_options) {
    argv_storage.push_back("-o");
    argv_storage.push_back(o);
  }
  if (options.debug) argv_storage.push_back("-d");
  std::vector<char*> argv;
  for (std::string& s : argv_storage) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  StderrCapture capture;
  const fuse_lowlevel_ops ops = CountedOps(LayerfsOps());
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), fs);
  fuse_opt_free_args(&args);
  std::string reason = capture.Finish();
  if (se == nullptr) return Status::Invalid(WithReason("FUSE refused the mount options", reason));
  return std::unique_ptr<Session>(new Session(se, options));
}

Session::~Session() {
  if (se_ == nullptr) return;
  if (mounted_) fuse_session_unmount(se_);
  if (signals_) fuse_remove_signal_handlers(se_);
  fuse_session_destroy(se_);
}

int Session::fd() const { return fuse_session_fd(se_); }

Status Session::Mount() {
  if (fuse_set_signal_handlers(se_) != 0) {
    return Status::Error(EIO, "cannot install signal handlers");
  }
  signals_ = true;
  const int handed = HandedConnection(options_.mountpoint);
  if (handed >= 0 && ::fcntl(handed, F_GETFD) < 0) {
    return Status::Error(EBADF, options_.mountpoint +
                                    ": no such open descriptor (a FUSE "
                                    "connection to serve was expected)");
  }
  StderrCapture capture;
  // libfuse takes a /dev/fd/N mountpoint as the connection to serve, without mounting.
  int rc = fuse_session_mount(se_, options_.mountpoint.c_str());
  std::string reason = capture.Finish();
  if (rc != 0) {
    return Status::Error(EIO, WithReason("cannot mount on " + options_.mountpoint,
                                         reason.empty() ? "is /dev/fuse available?" : reason));
  }
  if (handed >= 0) return Status::Ok();
  mounted_ = true;
  SetReadahead(options_.mountpoint, options_.readahead_kb);
  return Status::Ok();
}

Status Session::Daemonize() {
  // A connection handed over is served in the foreground: its caller made the mount and watches
  // this process, and there is no mount point here to probe for readiness.
  if (options_.foreground || options_.debug || !mounted_) return Status::Ok();
  Status detached = Detach(se_, options_.mountpoint);
  if (!detached.ok()) {
    // This is the parent and the daemon failed to start: it already unmounted, and the
    // connection's descriptor is closed.
    mounted_ = false;
    se_ = nullptr;
  }
  return detached;
}

Status Session::Loop() {
  int rc;
  if (options_.single_thread) {
    rc = fuse_session_loop(se_);
  } else {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(config, 1);
    if (options_.max_threads > 0) fuse_loop_cfg_set_max_threads(config, options_.max_threads);
    rc = fuse_session_loop_mt(se_, config);
    fuse_loop_cfg_destroy(config);
  }
  if (mounted_) fuse_session_unmount(se_);
  mounted_ = false;
  if (!options_.stats_path.empty()) {
    Status written = WriteRequestStats(options_.stats_path);
    if (!written.ok()) LogWarning("request statistics not written: {}", written.message());
  }
  if (rc != 0 && rc != SIGINT && rc != SIGTERM && rc != SIGHUP) {
    return Status::Error(EIO, "FUSE session ended with an error (" + std::to_string(rc) + ")");
  }
  return Status::Ok();
}

Status ServeMount(Filesystem* fs, const MountOptions& options) {
  if (HandedConnection(options.mountpoint) < 0) {
    LAYERFS_RETURN_IF_ERROR(CheckMountpoint(options.mountpoint));
  }
  LAYERFS_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, Session::Create(fs, options));
  LAYERFS_RETURN_IF_ERROR(session->Mount());
  LAYERFS_RETURN_IF_ERROR(session->Daemonize());
  if (options.on_serving) options.on_serving();
  return session->Loop();
}

}  // namespace layerfs
