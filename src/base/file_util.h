// Small file-system helpers: bounded reads, directory creation and atomic replacement.
#ifndef LAYERFS_BASE_FILE_UTIL_H_
#define LAYERFS_BASE_FILE_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"
#include "layerfs/status.h"

namespace layerfs {

// Reads all of `fd` from `offset`, for at most `length` bytes, failing if the file holds fewer.
Status PreadFully(int fd, void* buf, size_t length, uint64_t offset, std::string_view name);

// Writes all of `buf` to `fd` at `offset`: 0 or an errno value.
int PwriteFully(int fd, const void* buf, size_t length, uint64_t offset);

// Reads a whole (small) file; a file larger than `max_size` is an error, so that a hostile
// manifest cannot make layerfs allocate without bound.
Result<std::string> ReadSmallFile(const std::string& path, size_t max_size);

// mkdir -p with `mode` for the directories it creates.
Status MakeDirs(const std::string& path, mode_t mode = 0755);

// A file that appears under its final name only once it is complete: written to a temporary name
// in the same directory, synced, then renamed over the final name. If it is destroyed before
// Commit(), the temporary file is removed, so a crash or an error never leaves a partial file under
// the final name.
class AtomicFile {
 public:
  AtomicFile() = default;
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  ~AtomicFile();

  static Result<AtomicFile> Create(const std::string& final_path, mode_t mode = 0644);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return final_path_; }
  Status Write(const void* data, size_t size);
  // Syncs and renames into place; the fd stays open (read-only use of it is fine afterwards).
  Status Commit();
  // After Commit(): hands over the descriptor.
  UniqueFd ReleaseFd() { return std::move(fd_); }

 private:
  void Abandon();

  UniqueFd fd_;
  std::string final_path_;
  std::string temp_path_;
  bool committed_ = false;
};

// Writes `data` to `path` atomically (see AtomicFile).
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0644);

// Opens `path` (relative) below the directory `dirfd` without ever leaving it: symlinks are
// followed only while they stay inside; ".." may not climb above `dirfd`; absolute paths and
// symlinks are refused with EXDEV, loops with ELOOP. Uses openat2(RESOLVE_BENEATH), or the same
// walk done by hand where the kernel lacks or refuses openat2. Returns a descriptor or -1/errno.
int OpenBeneath(int dirfd, const std::string& path, int flags);
// The walk by hand, one component at a time with O_NOFOLLOW (exposed for tests).
int OpenBeneathByHand(int dirfd, const std::string& path, int flags);

// "/proc/self/fd/FD", or "/proc/self/fd/FD/NAME": a path to the file open as `fd`, or to `name`
// below the directory open as `fd`, for the calls that take no descriptor.
std::string ProcFdPath(int fd, std::string_view name = {});

// The names in the directory open as `dirfd` ("." and ".." left out), in the order the file
// system lists them. Returns 0 or an errno value.
int ListNames(int dirfd, std::vector<std::string>* names);

// Copies `length` bytes of `in` at `in_offset` to `out` at `out_offset`: copy_file_range where the
// kernel can (no copy through user space, and a reflink on file systems that share extents), else
// through a buffer. Returns 0 or an errno value (EIO if `in` ends early).
int CopyBytes(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t length);

// Whether `path` is a directory we can create files in.
Status CheckWritableDir(const std::string& path);

}  // namespace layerfs

#endif  // LAYERFS_BASE_FILE_UTIL_H_
