// Detaching the daemon that serves a mount from the command that made it, and collecting what
// libfuse and fusermount3 print so that a failure reads as one line of ours.
#ifndef LAYERFS_FUSE_DAEMON_H_
#define LAYERFS_FUSE_DAEMON_H_

#include <string>

#include "fuse/ops.h"
#include "layerfs/status.h"

namespace layerfs {

// Collects what is written to stderr between construction and Finish() (libfuse's and
// fusermount3's messages during one call).
class StderrCapture {
 public:
  StderrCapture();
  ~StderrCapture() { Finish(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  // Restores stderr and returns what was written, as one line.
  std::string Finish();

 private:
  int saved_ = -1;
  int read_end_ = -1;
  std::string text_;
};

// `text` with its line breaks made spaces and trailing spaces dropped.
std::string OneLine(std::string text);
// "message: reason", or the message alone when there is no reason.
std::string WithReason(const std::string& message, const std::string& reason);

// Forks the daemon of the session `se`, mounted at `mountpoint`. The parent returns only in
// failure (the daemon did not answer the kernel's INIT, e.g. because a FUSE option was refused),
// having unmounted and collected the daemon's messages; on success it exits 0 once the mount
// answers requests, so that the command returns with the mount ready. The child returns OK,
// detached from the terminal, logging to syslog.
Status Detach(fuse_session* se, const std::string& mountpoint);

}  // namespace layerfs

#endif  // LAYERFS_FUSE_DAEMON_H_
