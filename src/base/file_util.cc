#include "base/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <string_view>
#include <vector>

#include "base/path.h"

namespace layerfs {

Status PreadFully(int fd, void* buf, size_t length, uint64_t offset, std::string_view name) {
  auto* p = static_cast<char*>(buf);
  while (length > 0) {
    ssize_t n = ::pread(fd, p, length, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, std::string("read ") + std::string(name));
    }
    if (n == 0) return Status::Corrupt(std::string(name) + ": unexpected end of file");
    p += n;
    length -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

int PwriteFully(int fd, const void* buf, size_t length, uint64_t offset) {
  const auto* p = static_cast<const char*>(buf);
  while (length > 0) {
    ssize_t n = ::pwrite(fd, p, length, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    p += n;
    length -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

Result<std::string> ReadSmallFile(const std::string& path, size_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::FromErrno(errno, path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, path);
  if (!S_ISREG(st.st_mode)) return Status::Invalid(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    return Status::Invalid(path + ": too large (" + std::to_string(st.st_size) + " bytes, limit " +
                           std::to_string(max_size) + ")");
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  LAYERFS_RETURN_IF_ERROR(PreadFully(fd.get(), data.data(), data.size(), 0, path));
  return data;
}

Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return Status::Ok();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::Ok();
    return Status::Error(ENOTDIR, path + ": not a directory");
  }
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    LAYERFS_RETURN_IF_ERROR(MakeDirs(path.substr(0, slash), mode));
  }
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "create directory " + path);
  }
  return Status::Ok();
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : fd_(std::move(other.fd_)),
      final_path_(std::move(other.final_path_)),
      temp_path_(std::move(other.temp_path_)),
      committed_(other.committed_) {
  other.temp_path_.clear();
}

AtomicFile& AtomicFile::operator=(AtomicFile&& other) noexcept {
  if (this != &other) {
    Abandon();
    fd_ = std::move(other.fd_);
    final_path_ = std::move(other.final_path_);
    temp_path_ = std::move(other.temp_path_);
    committed_ = other.committed_;
    other.temp_path_.clear();
  }
  return *this;
}

AtomicFile::~AtomicFile() { Abandon(); }

void AtomicFile::Abandon() {
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
}

Result<AtomicFile> AtomicFile::Create(const std::string& final_path, mode_t mode) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  AtomicFile file;
  file.final_path_ = final_path;
  size_t slash = final_path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : final_path.substr(0, slash);
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[32];
    snprintf(suffix, sizeof(suffix), ".tmp-%016llx", static_cast<unsigned long long>(rng()));
    std::string temp = final_path + suffix;
    int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd >= 0) {
      file.fd_.reset(fd);
      file.temp_path_ = temp;
      return file;
    }
    if (errno != EEXIST) return Status::FromErrno(errno, "create " + temp);
  }
  return Status::Error(EEXIST, "create a temporary file in " + dir + ": too many collisions");
}

Status AtomicFile::Write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_.get(), p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write " + temp_path_);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (::fdatasync(fd_.get()) != 0) return Status::FromErrno(errno, "sync " + temp_path_);
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    return Status::FromErrno(errno, "rename " + temp_path_ + " to " + final_path_);
  }
  committed_ = true;
  temp_path_.clear();
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  LAYERFS_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path, mode));
  LAYERFS_RETURN_IF_ERROR(file.Write(data.data(), data.size()));
  return file.Commit();
}

Status CheckWritableDir(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, path);
  if (!S_ISDIR(st.st_mode)) return Status::Error(ENOTDIR, path + ": not a directory");
  if (::access(path.c_str(), W_OK | X_OK) != 0) {
    return Status::FromErrno(errno, path + " is not writable");
  }
  return Status::Ok();
}

// RESOLVE_BENEATH done in userspace, for kernels without openat2 (before 5.6) or sandboxes that
// refuse it: one component at a time, never following a symlink with the kernel (O_NOFOLLOW), so
// that a component swapped for a symlink meanwhile cannot lead out.
int OpenBeneathByHand(int dirfd, const std::string& path, int flags) {
  std::vector<std::string> parts;  // remaining components, next last
  auto push_path = [&parts](std::string_view p) {
    std::vector<std::string_view> split = SplitPath(p);
    for (auto it = split.rbegin(); it != split.rend(); ++it) parts.emplace_back(*it);
  };
  if (!path.empty() && path[0] == '/') {
    errno = EXDEV;
    return -1;
  }
  push_path(path);
  std::vector<UniqueFd> stack;  // the directories walked through, innermost last
  auto current = [&] { return stack.empty() ? dirfd : stack.back().get(); };
  int hops = 0;
  while (!parts.empty()) {
    std::string part = std::move(parts.back());
    parts.pop_back();
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (stack.empty()) {
        errno = EXDEV;
        return -1;
      }
      stack.pop_back();
      continue;
    }
    struct stat st;
    if (::fstatat(current(), part.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return -1;
    if (S_ISLNK(st.st_mode)) {
      if (++hops > 40) {
        errno = ELOOP;
        return -1;
      }
      char target[4096];
      ssize_t n = ::readlinkat(current(), part.c_str(), target, sizeof(target) - 1);
      if (n < 0) return -1;
      if (n == 0 || target[0] == '/') {
        errno = EXDEV;
        return -1;
      }
      push_path(std::string_view(target, static_cast<size_t>(n)));
      continue;
    }
    if (parts.empty()) return ::openat(current(), part.c_str(), flags | O_CLOEXEC | O_NOFOLLOW);
    int fd = ::openat(current(), part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    stack.emplace_back(fd);
  }
  // The path named the directory itself.
  return ::openat(current(), ".", flags | O_CLOEXEC);
}

// Opens `path` below `dirfd` without ever leaving it: symlinks are followed only while they stay
// inside (openat2 RESOLVE_BENEATH).
int OpenBeneath(int dirfd, const std::string& path, int flags) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
  if (fd < 0 && (errno == ENOSYS || errno == EPERM)) return OpenBeneathByHand(dirfd, path, flags);
  return static_cast<int>(fd);
}

std::string ProcFdPath(int fd, std::string_view name) {
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (!name.empty()) {
    path += '/';
    path += name;
  }
  return path;
}

int ListNames(int dirfd, std::vector<std::string>* names) {
  // A descriptor of its own: readdir moves the position of the one it reads.
  UniqueFd copy(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = copy ? ::fdopendir(copy.get()) : nullptr;
  if (d == nullptr) return errno;
  copy.release();  // the DIR owns it now
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n != "." && n != "..") names->emplace_back(n);
  }
  const int err = errno;
  ::closedir(d);
  return err;
}

int CopyBytes(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t length) {
  bool plain = false;  // copy_file_range refused: copy through a buffer from here on
  std::vector<char> buf;
  while (length > 0) {
    ssize_t n;
    if (!plain) {
      loff_t i = static_cast<loff_t>(in_offset), o = static_cast<loff_t>(out_offset);
      n = ::copy_file_range(in, &i, out, &o, length, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
                    errno == EBADF)) {
        plain = true;
        continue;
      }
      if (n < 0) return errno;
      if (n == 0) return EIO;
    } else {
      if (buf.empty()) buf.resize(1 << 20);
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(length, buf.size()));
      n = ::pread(in, buf.data(), chunk, static_cast<off_t>(in_offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno;
      if (n == 0) return EIO;
      if (int err = PwriteFully(out, buf.data(), static_cast<size_t>(n), out_offset)) return err;
    }
    in_offset += static_cast<uint64_t>(n);
    out_offset += static_cast<uint64_t>(n);
    length -= static_cast<uint64_t>(n);
  }
  return 0;
}

}  // namespace layerfs
