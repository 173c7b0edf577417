#include "fuse/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/log.h"
#include "fuse/unmount.h"

namespace layerfs {

StderrCapture::StderrCapture() {
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

std::string StderrCapture::Finish() {
  if (read_end_ < 0) return text_;
  std::fflush(stderr);
  ::dup2(saved_, STDERR_FILENO);
  ::close(saved_);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(read_end_, buf, sizeof(buf))) > 0) text_.append(buf, static_cast<size_t>(n));
  ::close(read_end_);
  read_end_ = -1;
  text_ = OneLine(std::move(text_));
  return text_;
}

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

std::string WithReason(const std::string& message, const std::string& reason) {
  return reason.empty() ? message : message + ": " + reason;
}

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
  while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0)
    reason.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  reason = OneLine(std::move(reason));
  ::waitpid(pid, nullptr, 0);
  (void)Unmount(mountpoint, /*lazy=*/true);
  return Status::Error(
      err == 0 ? EIO : err,
      WithReason("the mount daemon failed to start", reason.empty() ? std::strerror(err) : reason));
}

}  // namespace layerfs
