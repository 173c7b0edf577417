#include "mount/mount_fixture.h"

#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace layerfs::testing {
namespace {

bool IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string f;
    for (int i = 0; i < 5 && fields >> f; ++i) {
    }
    if (f == path) return true;
  }
  return false;
}

}  // namespace

KernelMount::KernelMount(const std::string& type, const std::string& options) {
  std::string cmd = "mount -t " + type + (options.empty() ? "" : " -o " + options) + " " + type +
                    " " + ShellQuote(dir_.path());
  if (RunShell(cmd) != 0) throw std::runtime_error("failed: " + cmd);
}

KernelMount::~KernelMount() { RunShell("umount -l " + ShellQuote(dir_.path())); }

bool CanMount() { return ::access("/dev/fuse", R_OK | W_OK) == 0; }

std::string LayerfsBinary() {
  const char* env = std::getenv("LAYERFS");
  return env != nullptr && *env != '\0' ? env : LAYERFS_BINARY;
}

TestMount::TestMount(std::vector<std::string> tars, std::string scratch,
                     std::vector<std::string> extra)
    : extra_(std::move(extra)) {
  ::chmod(dir_.path().c_str(), 0755);  // other users reach the mount point (permission tests)
  image_ = dir_.Sub("image");
  cache_ = dir_.Sub("cache");
  mnt_ = dir_.Sub("mnt");
  scratch_ = scratch.empty() ? dir_.Sub("scratch") : scratch;
  ::mkdir(image_.c_str(), 0755);
  ::mkdir(mnt_.c_str(), 0755);
  WriteDockerDir(image_, tars);
  LetTimestampsSettle();
  Mount();
}

TestMount::~TestMount() {
  try {
    Unmount();
  } catch (...) {
  }
}

void TestMount::Mount() {
  std::string cmd = ShellQuote(LayerfsBinary()) + " -q mount " + ShellQuote(image_ + "/manifest.json") +
                    " " + ShellQuote(mnt_) + " --cache " + ShellQuote(cache_) + " --scratch " +
                    ShellQuote(scratch_);
  for (const std::string& e : extra_) cmd += " " + ShellQuote(e);
  if (RunShell(cmd) != 0) throw std::runtime_error("mount failed: " + cmd);
  if (!IsMountPoint(mnt_)) throw std::runtime_error("not mounted after: " + cmd);
  mounted_ = true;
}

void TestMount::Unmount() {
  if (!mounted_) return;
  mounted_ = false;
  pid_t pid = daemon_pid();
  for (int i = 0; i < 50 && IsMountPoint(mnt_); ++i) {
    if (RunShell("fusermount3 -u " + ShellQuote(mnt_) + " 2>/dev/null") == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (IsMountPoint(mnt_)) RunShell("fusermount3 -u -z " + ShellQuote(mnt_));
  // The daemon finishes (and lets go of the scratch directory's lock) after the unmount.
  for (int i = 0; pid > 0 && i < 500 && ::kill(pid, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

pid_t TestMount::daemon_pid() const {
  std::string out = dir_.Sub("pid");
  RunShell("pgrep -f -n -- " + ShellQuote("mount " + image_ + "/manifest.json " + mnt_) + " > " +
           ShellQuote(out) + " 2>/dev/null");
  std::ifstream in(out);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

std::vector<std::string> TestMount::BlobDigests() const {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(image_)) {
    if (entry.path().extension() == ".tar") out.push_back(Sha256Of(ReadFile(entry.path())).hex());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace layerfs::testing
