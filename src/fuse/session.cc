#include "fuse/session.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "base/log.h"
#include "fuse/mount_table.h"
#include "fuse/ops.h"
#include "fuse/request_stats.h"

namespace layerfs {
namespace {

// The "major:minor" device of the mount at `path`, or "" if nothing is mounted there.
std::string MountDevice(const std::string& path) {
  std::optional<MountEntry> m = FindMount(path);
  return m ? m->device : "";
}

bool IsMountPoint(const std::string& path) { return !MountDevice(path).empty(); }

// Sets the read-ahead of a new FUSE mount, before the daemon answers INIT (whose reply the kernel
// takes the smaller of this and max_readahead from). Needs root; without, the default stays.
void SetReadahead(const std::string& mountpoint, unsigned kb) {
  if (kb == 0) return;
  char* real = ::realpath(mountpoint.c_str(), nullptr);
  std::string dev = MountDevice(real != nullptr ? real : mountpoint);
  std::free(real);
  if (dev.empty()) return;
  std::string path = "/sys/class/bdi/" + dev + "/read_ahead_kb";
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

// Collects what libfuse and fusermount3 print on stderr during one call, so that a failure is
// reported as one line of ours that includes their reason.
class StderrCapture {
 public:
  StderrCapture() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return;
    saved_ = ::dup(STDERR_FILENO);
    if (saved_ < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      return;
    }
    std::fflush(stderr);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
    read_end_ = fds[0];
  }
  ~StderrCapture() { Finish(); }

  // Restores stderr and returns what was written, as one line.
  std::string Finish() {
    if (read_end_ < 0) return text_;
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(read_end_, buf, sizeof(buf))) > 0) text_.append(buf, static_cast<size_t>(n));
    ::close(read_end_);
    read_end_ = -1;
    for (char& c : text_) {
      if (c == '\n') c = ' ';
    }
    while (!text_.empty() && text_.back() == ' ') text_.pop_back();
    return text_;
  }

 private:
  int saved_ = -1;
  int read_end_ = -1;
  std::string text_;
};

std::string WithReason(const std::string& message, const std::string& reason) {
  return reason.empty() ? message : message + ": " + reason;
}

struct SessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};

// Forks the daemon. The parent returns only in failure (the daemon did not answer the kernel's
// INIT, e.g. because a FUSE option was refused), having unmounted and collected the daemon's
// messages; on success it exits 0 once the mount answers requests, so that the command returns
// with the mount ready. The child returns OK, detached from the terminal, logging to syslog.
Status Detach(fuse_session* se, const std::string& mountpoint) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    fuse_session_unmount(se);
    return Status::FromErrno(err, "fork");
  }
  if (pid == 0) {
    ::close(pipe_fds[0]);
    ::setsid();
    if (::chdir("/") != 0) {
      // Not fatal: the daemon uses no relative paths.
    }
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(null_fd, STDOUT_FILENO);
      ::close(null_fd);
    }
    // Until the parent has seen the mount answer, what libfuse prints goes back to it; after
    // that the pipe has no reader and the writes fail quietly.
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::close(pipe_fds[1]);
    ::signal(SIGPIPE, SIG_IGN);
    LogToSyslog("layerfs");
    return Status::Ok();
  }
  ::close(pipe_fds[1]);
  // The daemon holds the FUSE connection now; holding it here too would keep it alive if the
  // daemon died, and the probe below would wait forever.
  ::close(fuse_session_fd(se));
  // statfs blocks until the daemon has answered INIT (and then this STATFS).
  struct statfs sfs;
  int rc;
  do {
    rc = ::statfs(mountpoint.c_str(), &sfs);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) ::_exit(0);
  int err = errno;
  std::string reason;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0) reason.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  for (char& c : reason) {
    if (c == '\n') c = ' ';
  }
  while (!reason.empty() && reason.back() == ' ') reason.pop_back();
  ::waitpid(pid, nullptr, 0);
  (void)Unmount(mountpoint, /*lazy=*/true);
  return Status::Error(err == 0 ? EIO : err,
                       WithReason("the mount daemon failed to start", reason.empty()
                                                                          ? std::strerror(err)
                                                                          : reason));
}

}  // namespace

Status CheckMountpoint(const std::string& mountpoint) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return Status::Error(ENOTCONN, "mountpoint " + mountpoint +
                                         " is a stale FUSE mount; unmount it with fusermount3 -u " +
                                         mountpoint);
    }
    if (errno == ENOENT) {
      return Status::Error(ENOENT, "mountpoint " + mountpoint + " does not exist");
    }
    return Status::FromErrno(errno, "mountpoint " + mountpoint);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::Error(ENOTDIR, "mountpoint " + mountpoint + " is not a directory");
  }
  char* real = ::realpath(mountpoint.c_str(), nullptr);
  std::string resolved = real != nullptr ? real : mountpoint;
  std::free(real);
  if (IsMountPoint(resolved)) {
    return Status::Error(EBUSY, "mountpoint " + mountpoint +
                                    " is already a mount point (busy); unmount it first");
  }
  return Status::Ok();
}

bool IsHostRoot() {
  if (::geteuid() != 0) return false;
  // The initial user namespace maps every id to itself: "0 0 4294967295".
  std::ifstream in("/proc/self/uid_map");
  uint64_t inside = 1, outside = 1, count = 0;
  if (!(in >> inside >> outside >> count)) return true;  // no user namespaces in this kernel
  return inside == 0 && outside == 0 && count == 4294967295u;
}

namespace {

// Where libfuse looks for fusermount3: its install directory, then PATH.
std::string FindFusermount() {
  std::vector<std::string> dirs = {"/usr/bin"};
  if (const char* path = std::getenv("PATH")) {
    std::istringstream in(path);
    std::string dir;
    while (std::getline(in, dir, ':')) {
      if (!dir.empty()) dirs.push_back(dir);
    }
  }
  for (const std::string& dir : dirs) {
    std::string candidate = dir + "/fusermount3";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

bool FuseConfAllowsOther() {
  std::ifstream in("/etc/fuse.conf");
  std::string line;
  while (std::getline(in, line)) {
    size_t begin = line.find_first_not_of(" \t");
    if (begin == std::string::npos || line[begin] == '#') continue;
    size_t end = line.find_last_not_of(" \t\r");
    if (line.substr(begin, end - begin + 1) == "user_allow_other") return true;
  }
  return false;
}

}  // namespace

Status CheckCanMount(const MountOptions& options) {
  // libfuse opens /dev/fuse in this process, also when fusermount3 then does the mount.
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return Status::Error(ENOENT,
                           "/dev/fuse is missing: FUSE is not available here (load the fuse "
                           "module, or give the container the device: --device /dev/fuse)");
    }
    struct stat st;
    std::string how;
    if (::stat("/dev/fuse", &st) == 0) how = fmt::format(" (mode {:04o})", st.st_mode & 07777);
    return Status::Error(err, fmt::format("cannot open /dev/fuse{}: {}{}", how,
                                          std::strerror(err),
                                          IsHostRoot() ? "" : ": this user may not use FUSE; "
                                                              "Debian makes /dev/fuse mode 0666 "
                                                              "for everyone"));
  }
  ::close(fd);
  if (::geteuid() == 0) return Status::Ok();  // mounts by itself (also in a user namespace)

  // An ordinary user mounts through the setuid fusermount3.
  std::string fusermount = FindFusermount();
  struct stat st;
  if (fusermount.empty() || ::stat(fusermount.c_str(), &st) != 0) {
    return Status::Error(ENOENT,
                         "fusermount3 not found: an ordinary user mounts through the setuid "
                         "fusermount3 of the fuse3 package (apt-get install fuse3)");
  }
  if (st.st_uid != 0 || !(st.st_mode & S_ISUID)) {
    return Status::Error(EPERM, fusermount + " is not setuid root, so an ordinary user cannot "
                                             "mount with it (reinstall the fuse3 package)");
  }
  if (::stat(options.mountpoint.c_str(), &st) == 0) {
    if ((st.st_mode & S_ISVTX) && st.st_uid != ::getuid()) {
      return Status::Error(EPERM, "mountpoint " + options.mountpoint +
                                      " is in a sticky directory that is not yours; fusermount3 "
                                      "mounts only on your own directories");
    }
    if (::access(options.mountpoint.c_str(), W_OK) != 0) {
      return Status::Error(EACCES, fmt::format("mountpoint {} is not writable by you (uid {}); "
                                               "fusermount3 mounts only on a directory you may "
                                               "write to",
                                               options.mountpoint, ::getuid()));
    }
  }
  for (const std::string& o : options.fuse_options) {
    if ((o == "allow_other" || o == "allow_root") && !FuseConfAllowsOther()) {
      return Status::Error(EPERM, "-o " + o +
                                      ": only root may let other users into a mount unless "
                                      "/etc/fuse.conf has the line user_allow_other");
    }
  }
  return Status::Ok();
}

Status ServeMount(Filesystem* fs, const MountOptions& options) {
  LAYERFS_RETURN_IF_ERROR(CheckMountpoint(options.mountpoint));

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

  std::unique_ptr<fuse_session, SessionDeleter> se;
  {
    StderrCapture capture;
    const fuse_lowlevel_ops ops = CountedOps(LayerfsOps(fs->writable() != nullptr));
    se.reset(fuse_session_new(&args, &ops, sizeof(ops), fs));
    fuse_opt_free_args(&args);
    std::string reason = capture.Finish();
    if (!se) return Status::Invalid(WithReason("FUSE refused the mount options", reason));
  }
  if (fuse_set_signal_handlers(se.get()) != 0) {
    return Status::Error(EIO, "cannot install signal handlers");
  }
  {
    StderrCapture capture;
    int rc = fuse_session_mount(se.get(), options.mountpoint.c_str());
    std::string reason = capture.Finish();
    if (rc != 0) {
      fuse_remove_signal_handlers(se.get());
      return Status::Error(EIO, WithReason("cannot mount on " + options.mountpoint,
                                           reason.empty() ? "is /dev/fuse available?" : reason));
    }
  }
  SetReadahead(options.mountpoint, options.readahead_kb);
  const bool foreground = options.foreground || options.debug;
  if (!foreground) {
    Status detached = Detach(se.get(), options.mountpoint);
    if (!detached.ok()) {
      // This is the parent and the daemon failed to start: it already unmounted.
      (void)se.release();  // its descriptor is closed; the daemon's copy is gone with it
      return detached;
    }
  }

  int rc;
  if (options.single_thread) {
    rc = fuse_session_loop(se.get());
  } else {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(config, 1);
    if (options.max_threads > 0) fuse_loop_cfg_set_max_threads(config, options.max_threads);
    rc = fuse_session_loop_mt(se.get(), config);
    fuse_loop_cfg_destroy(config);
  }
  fuse_session_unmount(se.get());
  fuse_remove_signal_handlers(se.get());
  if (!options.stats_path.empty()) {
    Status written = WriteRequestStats(options.stats_path);
    if (!written.ok()) LogWarning("request statistics not written: {}", written.message());
  }
  if (rc != 0 && rc != SIGINT && rc != SIGTERM && rc != SIGHUP) {
    return Status::Error(EIO, "FUSE session ended with an error (" + std::to_string(rc) + ")");
  }
  return Status::Ok();
}

}  // namespace layerfs
