#include "scratch/scratch_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/log.h"

namespace layerfs {
namespace {

constexpr const char* kMetaName = "layerfs-scratch.json";
constexpr int kLockTries = 60;
constexpr useconds_t kLockWaitUs = 50'000;  // 3 s in all

Status Errno(std::string_view what, const std::string& path) {
  return Status::FromErrno(errno, fmt::format("{}: {}", path, what));
}

Result<UniqueFd> OpenSubdir(int dirfd, const char* name, const std::string& path,
                           bool* created = nullptr) {
  if (::mkdirat(dirfd, name, 0755) == 0) {
    if (created != nullptr) *created = true;
  } else if (errno != EEXIST) {
    return Errno(fmt::format("cannot create {}", name), path);
  }
  UniqueFd fd(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Errno(fmt::format("cannot open {}", name), path);
  return fd;
}

}  // namespace

ScratchDir::~ScratchDir() {
  if (!ephemeral_ || !root_) return;
  Status s = RemoveContents(root_.get(), path_);
  if (s.ok() && ::rmdir(path_.c_str()) != 0) s = Errno("cannot remove", path_);
  if (!s.ok()) LogWarning("scratch directory not removed: {}", s.message());
}

Result<ScratchDir> ScratchDir::Open(const std::string& path,
                                    const std::vector<std::string>& layers, bool create) {
  ScratchDir dir;
  dir.path_ = path;
  if (create && ::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return Errno("cannot create the scratch directory", path);
  }
  dir.root_.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.root_) return Errno("cannot open the scratch directory", path);
  Status s = dir.Prepare(layers, create);
  if (!s.ok()) return s;
  return dir;
}

Result<ScratchDir> ScratchDir::CreateEphemeral(const std::vector<std::string>& layers) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp") +
                        "/layerfs-scratch-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Errno("cannot create a scratch directory", pattern);
  }
  ScratchDir dir;
  dir.path_ = pattern;
  dir.ephemeral_ = true;
  dir.root_.reset(::open(pattern.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.root_) return Errno("cannot open the scratch directory", pattern);
  Status s = dir.Prepare(layers, true);
  if (!s.ok()) return s;
  return dir;
}

namespace {

// Whether the directory `root` describes itself as a scratch directory of the image whose
// description is `want`: true if it does, false if it has no description; an error if it
// describes something else.
Result<bool> CheckDescription(int root, const std::string& path, const nlohmann::json& want) {
  const std::string meta_path = path + "/" + kMetaName;
  UniqueFd meta(::openat(root, kMetaName, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!meta && errno == ENOENT) return false;
  if (!meta) return Errno("cannot open " + std::string(kMetaName), path);
  auto text = ReadSmallFile(meta_path, 1 << 20);
  if (!text.ok()) return text.status();
  nlohmann::json have = nlohmann::json::parse(*text, nullptr, false);
  if (have.is_discarded() || !have.is_object() || !have.contains("format")) {
    return Status::Invalid(fmt::format("{}: not a layerfs scratch description", meta_path));
  }
  if (have["format"] != kScratchFormat) {
    return Status::Unsupported(fmt::format("{}: scratch format {} (this layerfs reads {})",
                                           meta_path, have["format"].dump(), kScratchFormat));
  }
  if (have["layers"] != want["layers"]) {
    return Status::Invalid(fmt::format(
        "{}: the scratch directory holds changes to another image; mount that image with it, "
        "or use another --scratch directory", path));
  }
  return true;
}

// A directory without a description may become a scratch directory only when it is empty, or
// holds only what an interrupted first mount made of one: never adopt someone else's files as
// changes.
Status CheckAdoptable(int root, const std::string& path) {
  std::vector<std::string> names;
  if (int err = ListNames(root, &names)) {
    return Status::FromErrno(err, fmt::format("{}: cannot list", path));
  }
  for (const std::string& n : names) {
    if (n == "lock" || n == "upper" || n == "work") continue;
    return Status::Invalid(fmt::format(
        "{}: not a layerfs scratch directory and not empty (it holds '{}')", path, n));
  }
  return Status::Ok();
}

}  // namespace

Status ScratchDir::Prepare(const std::vector<std::string>& layers, bool create) {
  const int root = root_.get();
  // Nothing is written to a directory that is refused: first what it is, then the lock.
  nlohmann::json want = {{"format", kScratchFormat}, {"layers", layers}};
  auto described = CheckDescription(root, path_, want);
  if (!described.ok()) return described.status();
  if (!*described && !create) {
    return Status::NotFound(fmt::format("{}: not a layerfs scratch directory (no {})", path_,
                                        kMetaName));
  }
  if (!*described) {
    Status s = CheckAdoptable(root, path_);
    if (!s.ok()) return s;
  }
  // The lock before anything else is looked at: a second mount must not even look at work/ while
  // the first one uses it. Read-only: flock needs no more, and no descriptor open for writing
  // keeps the scratch file system from being remounted read-only.
  lock_.reset(::openat(root, "lock", O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock_) return Errno("cannot create its lock file", path_);
  // A mount just unmounted lets go of the lock when its daemon exits, a moment later.
  for (int tries = 0; ::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0; ++tries) {
    if (errno == EWOULDBLOCK && tries < kLockTries) {
      ::usleep(kLockWaitUs);
      continue;
    }
    if (errno == EWOULDBLOCK) {
      return Status::Error(EBUSY, fmt::format("{}: the scratch directory is in use by another "
                                              "mount", path_));
    }
    return Errno("cannot lock", path_);
  }
  if (!*described) {
    // Another mount may have made it a scratch directory while this one waited for the lock.
    described = CheckDescription(root, path_, want);
    if (!described.ok()) return described.status();
  }
  if (!*described) {
    Status s = CheckAdoptable(root, path_);
    if (s.ok()) s = WriteFileAtomic(path_ + "/" + kMetaName, want.dump(2) + "\n", 0644);
    if (!s.ok()) return s;
  }

  auto upper = OpenSubdir(root, "upper", path_, &fresh_);
  if (!upper.ok()) return upper.status();
  upper_ = std::move(*upper);
  auto work = OpenSubdir(root, "work", path_);
  if (!work.ok()) return work.status();
  work_ = std::move(*work);
  // What a killed mount left half done: never part of the changes.
  Status cleared = RemoveContents(work_.get(), path_ + "/work");
  if (!cleared.ok()) return cleared;

  // Probe what upper/'s file system can keep.
  std::string probe = TempName();
  UniqueFd fd(::openat(work_.get(), probe.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return Errno("cannot create files in work/", path_);
  xattrs_ = ::fsetxattr(fd.get(), kMetacopyXattr.data(), "", 0, 0) == 0;
  ::unlinkat(work_.get(), probe.c_str(), 0);
  return Status::Ok();
}

std::string ScratchDir::TempName() {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("tmp-{}-{}", ::getpid(), counter.fetch_add(1, std::memory_order_relaxed));
}

Status RemoveContents(int dirfd, std::string_view name_for_errors) {
  std::vector<std::string> names;
  if (int err = ListNames(dirfd, &names)) {
    return Status::FromErrno(err, fmt::format("{}: cannot list", name_for_errors));
  }
  Status result = Status::Ok();
  for (const std::string& n : names) {
    if (::unlinkat(dirfd, n.c_str(), 0) == 0) continue;
    if (errno != EISDIR) {
      result = Status::FromErrno(errno, fmt::format("{}/{}: cannot remove", name_for_errors, n));
      continue;
    }
    UniqueFd sub(::openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) {
      result = Status::FromErrno(errno, fmt::format("{}/{}: cannot open", name_for_errors, n));
      continue;
    }
    // A directory without write or search permission (chmod 0 inside the mount) is ours to empty.
    ::fchmod(sub.get(), 0700);
    Status s = RemoveContents(sub.get(), fmt::format("{}/{}", name_for_errors, n));
    if (s.ok() && ::unlinkat(dirfd, n.c_str(), AT_REMOVEDIR) != 0) {
      s = Status::FromErrno(errno, fmt::format("{}/{}: cannot remove", name_for_errors, n));
    }
    if (!s.ok()) result = s;
  }
  return result;
}

std::optional<Override> ReadOverride(const std::string& path) {
  char buf[128];
  ssize_t n = ::getxattr(path.c_str(), kOverrideXattr.data(), buf, sizeof(buf));
  Override o;
  if (n < 0) return std::nullopt;
  if (!Override::Decode(std::string_view(buf, static_cast<size_t>(n)), &o)) {
    LogWarning("{}: ignoring a malformed {}", path, kOverrideXattr);
    return std::nullopt;
  }
  return o;
}

std::string Override::Encode() const {
  return fmt::format("{}:{}:{:o}:{}:{}", uid, gid, mode, major(rdev), minor(rdev));
}

bool Override::Decode(std::string_view text, Override* out) {
  unsigned long long v[5];
  const int bases[5] = {10, 10, 8, 10, 10};
  size_t pos = 0;
  for (int i = 0; i < 5; ++i) {
    size_t end = i < 4 ? text.find(':', pos) : text.size();
    if (end == std::string_view::npos || end == pos || end - pos > 24) return false;
    std::string field(text.substr(pos, end - pos));
    char* stop = nullptr;
    errno = 0;
    v[i] = std::strtoull(field.c_str(), &stop, bases[i]);
    if (errno != 0 || stop == nullptr || *stop != '\0' || field[0] == '-') return false;
    pos = end + 1;
  }
  if (v[0] > 0xffffffffull || v[1] > 0xffffffffull || v[2] > 0177777 || v[3] > 0xffffffffull ||
      v[4] > 0xffffffffull) {
    return false;
  }
  const mode_t type = static_cast<mode_t>(v[2]) & S_IFMT;
  if (type != S_IFREG && type != S_IFDIR && type != S_IFCHR && type != S_IFBLK &&
      type != S_IFIFO && type != S_IFSOCK) {
    return false;
  }
  out->uid = static_cast<uint32_t>(v[0]);
  out->gid = static_cast<uint32_t>(v[1]);
  out->mode = static_cast<mode_t>(v[2]);
  out->rdev = makedev(static_cast<unsigned>(v[3]), static_cast<unsigned>(v[4]));
  return true;
}

}  // namespace layerfs
