#include "fuse/preflight.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fuse/mount_table.h"

namespace layerfs {
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
  if (FindMount(resolved)) {
    return Status::Error(
        EBUSY, "mountpoint " + mountpoint + " is already a mount point (busy); unmount it first");
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

Status CheckCanMount(const std::string& mountpoint, const std::vector<std::string>& fuse_options) {
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
    return Status::Error(err, fmt::format("cannot open /dev/fuse{}: {}{}", how, std::strerror(err),
                                          IsHostRoot() ? ""
                                                       : ": this user may not use FUSE; "
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
    return Status::Error(EPERM, fusermount +
                                    " is not setuid root, so an ordinary user cannot "
                                    "mount with it (reinstall the fuse3 package)");
  }
  if (::stat(mountpoint.c_str(), &st) == 0) {
    if ((st.st_mode & S_ISVTX) && st.st_uid != ::getuid()) {
      return Status::Error(EPERM, "mountpoint " + mountpoint +
                                      " is in a sticky directory that is not yours; fusermount3 "
                                      "mounts only on your own directories");
    }
    if (::access(mountpoint.c_str(), W_OK) != 0) {
      return Status::Error(EACCES, fmt::format("mountpoint {} is not writable by you (uid {}); "
                                               "fusermount3 mounts only on a directory you may "
                                               "write to",
                                               mountpoint, ::getuid()));
    }
  }
  for (const std::string& o : fuse_options) {
    if ((o == "allow_other" || o == "allow_root") && !FuseConfAllowsOther()) {
      return Status::Error(EPERM, "-o " + o +
                                      ": only root may let other users into a mount unless "
                                      "/etc/fuse.conf has the line user_allow_other");
    }
  }
  return Status::Ok();
}

}  // namespace layerfs
