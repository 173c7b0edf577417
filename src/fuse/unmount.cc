// layerfs umount: only ever a layerfs mount.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "fuse/mount_table.h"
#include "fuse/unmount.h"

namespace layerfs {
namespace {

Status Busy(const std::string& mountpoint) {
  return Status::Error(EBUSY, fmt::format("{}: busy: a process is using the mount (its working "
                                          "directory or an open file is in it; fuser -vm {} "
                                          "lists them); layerfs umount -z {} detaches it now and "
                                          "ends it once it is no longer used",
                                          mountpoint, mountpoint, mountpoint));
}

// Runs fusermount3 -u, with what it prints on stderr kept for the error.
Status Fusermount(const std::string& mountpoint, bool lazy) {
  std::vector<const char*> argv = {"fusermount3", "-u"};
  if (lazy) argv.push_back("-z");
  argv.insert(argv.end(), {"--", mountpoint.c_str(), nullptr});
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::FromErrno(err, "fork");
  }
  if (pid == 0) {
    ::dup2(fds[1], STDERR_FILENO);
    ::execvp(argv[0], const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string said;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) said.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return Status::Error(ENOENT, "unmount " + mountpoint + ": fusermount3 not found");
  }
  if (said.find(std::strerror(EBUSY)) != std::string::npos) return Busy(mountpoint);
  for (char& c : said) {
    if (c == '\n') c = ' ';
  }
  while (!said.empty() && said.back() == ' ') said.pop_back();
  return Status::Error(EIO, "unmount " + mountpoint + ": " +
                                (said.empty() ? "fusermount3 failed" : said));
}

}  // namespace

Status Unmount(const std::string& mountpoint, bool lazy) {
  const std::string path = AbsoluteMountPath(mountpoint);
  std::optional<MountEntry> mount = FindMount(path);
  if (!mount) {
    return Status::Error(EINVAL, fmt::format("{}: not mounted (not a mount point)", mountpoint));
  }
  if (!mount->is_layerfs()) {
    return Status::Error(EINVAL, fmt::format("{}: not a layerfs mount (a {} mount of {}); left "
                                             "as it is",
                                             mountpoint, mount->fstype, mount->source));
  }
  if (::geteuid() == 0) {
    if (::umount2(path.c_str(), lazy ? MNT_DETACH : 0) == 0) return Status::Ok();
    if (errno == EBUSY) return Busy(mountpoint);
    if (errno != EPERM) return Status::FromErrno(errno, "unmount " + mountpoint);
  }
  return Fusermount(path, lazy);
}

}  // namespace layerfs
