// WritableTree: file content, metadata changes, xattrs and statfs.
#include "tree/writable_tree.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "base/file_util.h"
#include "base/log.h"
#include "base/path.h"
#include "tree/writable_tree_internal.h"

namespace layerfs {

using namespace writable_internal;  // NOLINT: the helpers of this class's files

int WritableTree::OpenUpper(Inode* in, int flags, UniqueFd* out) const {
  flags |= O_CLOEXEC;
  if (!in->names.empty()) {
    out->reset(::openat(in->names[0].dir->dir->fd.get(), in->names[0].name.c_str(),
                        flags | O_NOFOLLOW));
  } else if (in->orphan) {
    // Its last name is gone, but a process still has it open.
    out->reset(::open(ProcFdPath(in->orphan.get()).c_str(), flags));
  } else {
    return ENOENT;
  }
  return *out ? 0 : Errno();
}

int WritableTree::WritableData(Ino ino, bool truncating, UniqueFd* out) {
  Inode* in = FindUnlocked(ino);
  if (in == nullptr || !in->upper || in->metacopy.load(std::memory_order_acquire)) {
    {
      std::unique_lock lock(mu_);
      in = Materialize(ino);
      if (in == nullptr) return ESTALE;
      if (in->type != S_IFREG) return in->type == S_IFDIR ? EISDIR : EINVAL;
      if (!in->upper) {
        int err = in->gone ? CopyUpOrphan(in) : CopyUpMeta(in);
        if (err != 0) return err;
      }
    }
    if (in->metacopy.load(std::memory_order_acquire)) {
      std::lock_guard data_lock(in->data_mu);
      if (int err = FillData(in, truncating)) return err;
    }
  }
  std::shared_lock lock(mu_);
  return OpenUpper(in, O_WRONLY, out);
}

int WritableTree::ReadFrom(Ino ino, ReadSource* out) {
  Inode* in = FindUnlocked(ino);  // lock-free for image files: untouched ones cost nothing more
  if (in == nullptr) {
    if (!IsImageIno(ino)) return ESTALE;
    out->node = ImageNode(ino);
    return 0;
  }
  if (!in->upper || in->metacopy.load(std::memory_order_acquire)) {
    if (in->type != S_IFREG) return in->type == S_IFDIR ? EISDIR : EINVAL;
    out->node = in->data_node;
    return 0;
  }
  std::shared_lock lock(mu_);
  return OpenUpper(in, O_RDONLY, &out->fd);
}

int WritableTree::Write(Ino ino, const void* data, size_t size, off_t offset, size_t* written) {
  UniqueFd fd;
  if (int err = WritableData(ino, false, &fd)) return err;
  ssize_t n = ::pwrite(fd.get(), data, size, offset);
  if (n < 0) return Errno();
  *written = static_cast<size_t>(n);
  return 0;
}

int WritableTree::Fsync(Ino ino, bool datasync) {
  Inode* in = FindUnlocked(ino);
  if (in == nullptr || !in->upper) return 0;  // nothing of it is in the scratch directory
  UniqueFd fd;
  {
    std::shared_lock lock(mu_);
    if (in->dir) return ::fsync(in->dir->fd.get()) == 0 ? 0 : Errno();
    if (in->type != S_IFREG) return 0;
    if (int err = OpenUpper(in, O_RDONLY, &fd)) return err;
  }
  int rc = datasync ? ::fdatasync(fd.get()) : ::fsync(fd.get());
  return rc == 0 ? 0 : Errno();
}

int WritableTree::Fallocate(Ino ino, int mode, off_t offset, off_t length) {
  UniqueFd fd;
  if (int err = WritableData(ino, false, &fd)) return err;
  if (::fallocate(fd.get(), mode, offset, length) != 0) return Errno();
  return 0;
}

int WritableTree::SetAttr(Ino ino, const struct stat& attr, int to_set, struct stat* out) {
  if (to_set & kSetSize) {
    UniqueFd fd;
    if (int err = WritableData(ino, attr.st_size == 0, &fd)) return err;
    if (::ftruncate(fd.get(), attr.st_size) != 0) return Errno();
  }
  std::unique_lock lock(mu_);
  Inode* in = Materialize(ino);
  if (in == nullptr) return ESTALE;
  if (to_set & ~kSetSize) {
    if (in->gone && !in->upper) return ENOENT;
    if (!in->gone) {
      if (int err = in->type == S_IFDIR ? CopyUpDir(in) : CopyUpMeta(in)) return err;
    }
    const bool symlink = in->type == S_IFLNK;
    UniqueFd opened;  // an orphan, reopened
    int fd = -1, dirfd = -1;
    std::string name;
    if (in->dir) {
      fd = in->dir->fd.get();
    } else if (!in->names.empty()) {
      dirfd = in->names[0].dir->dir->fd.get();
      name = in->names[0].name;
    } else if (int err = OpenUpper(in, O_RDONLY, &opened)) {
      return err;
    } else {
      fd = opened.get();
    }
    if (in->over && (to_set & (kSetUid | kSetGid | kSetMode))) {
      // Kept as an override: the change is to the record, not to the file's own owner.
      Override want = *in->over;
      if (to_set & kSetUid) want.uid = attr.st_uid;
      if (to_set & kSetGid) want.gid = attr.st_gid;
      if (to_set & kSetMode) want.mode = (want.mode & S_IFMT) | (attr.st_mode & 07777);
      const mode_t upper_type = in->dir ? S_IFDIR : S_IFREG;
      if (int err = SetOwnership(fd, dirfd, name, upper_type, want, &in->over)) return err;
    } else {
      if (to_set & (kSetUid | kSetGid)) {
        uid_t uid = (to_set & kSetUid) ? attr.st_uid : static_cast<uid_t>(-1);
        gid_t gid = (to_set & kSetGid) ? attr.st_gid : static_cast<gid_t>(-1);
        int rc = fd >= 0 ? ::fchown(fd, uid, gid)
                         : ::fchownat(dirfd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
        if (rc != 0) return Errno();
      }
      if ((to_set & kSetMode) && !symlink) {
        int rc = fd >= 0 ? ::fchmod(fd, attr.st_mode & 07777)
                         : ::fchmodat(dirfd, name.c_str(), attr.st_mode & 07777, 0);
        if (rc != 0) return Errno();
      }
    }
    if (to_set & (kSetAtime | kSetMtime | kSetAtimeNow | kSetMtimeNow)) {
      struct timespec times[2];
      times[0].tv_nsec = UTIME_OMIT;
      times[1].tv_nsec = UTIME_OMIT;
      if (to_set & kSetAtimeNow) {
        times[0].tv_nsec = UTIME_NOW;
      } else if (to_set & kSetAtime) {
        times[0] = attr.st_atim;
      }
      if (to_set & kSetMtimeNow) {
        times[1].tv_nsec = UTIME_NOW;
      } else if (to_set & kSetMtime) {
        times[1] = attr.st_mtim;
      }
      int rc = fd >= 0 && !symlink ? ::futimens(fd, times)
                                   : ::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
      if (rc != 0) return Errno();
    }
  }
  return StatLocked(ino, out);
}

// ---- xattrs ----

int WritableTree::GetXattr(Ino ino, std::string_view name, std::string* value) {
  if (PrivateXattr(name)) return ENODATA;
  std::shared_lock lock(mu_);
  Inode* in = Find(ino);
  if (in == nullptr || !in->upper) {
    if (!IsImageIno(ino)) return ESTALE;
    const uint32_t node = in != nullptr ? in->image_node : ImageNode(ino);
    return tree_.Xattr(node, name, value) ? 0 : ENODATA;
  }
  const XattrTarget target = XattrOf(in);
  std::string key(name);
  for (;;) {
    ssize_t n = target.Get(key.c_str(), nullptr, 0);
    if (n < 0) return Errno();
    value->resize(static_cast<size_t>(n));
    n = target.Get(key.c_str(), value->data(), value->size());
    if (n >= 0) {
      value->resize(static_cast<size_t>(n));
      return 0;
    }
    if (errno != ERANGE) return Errno();
  }
}

int WritableTree::ListXattr(Ino ino, std::string* names) {
  std::shared_lock lock(mu_);
  Inode* in = Find(ino);
  names->clear();
  if (in == nullptr || !in->upper) {
    if (!IsImageIno(ino)) return ESTALE;
    tree_.XattrNames(in != nullptr ? in->image_node : ImageNode(ino), names);
    return 0;
  }
  const XattrTarget target = XattrOf(in);
  std::string raw;
  for (;;) {
    ssize_t n = target.List(nullptr, 0);
    if (n < 0) return Errno();
    raw.resize(static_cast<size_t>(n));
    n = target.List(raw.data(), raw.size());
    if (n >= 0) {
      raw.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE) return Errno();
  }
  for (size_t pos = 0; pos < raw.size();) {
    size_t end = raw.find('\0', pos);
    if (end == std::string::npos) end = raw.size();
    std::string_view key(raw.data() + pos, end - pos);
    if (!key.empty() && !PrivateXattr(key)) {
      *names += key;
      *names += '\0';
    }
    pos = end + 1;
  }
  return 0;
}

int WritableTree::SetXattr(Ino ino, std::string_view name, std::string_view value, int flags) {
  if (PrivateXattr(name)) return EPERM;
  std::unique_lock lock(mu_);
  Inode* in = Materialize(ino);
  if (in == nullptr || in->gone) return ENOENT;
  if (int err = in->type == S_IFDIR ? CopyUpDir(in) : CopyUpMeta(in)) return err;
  std::string key(name);
  if (XattrOf(in).Set(key.c_str(), value.data(), value.size(), flags) != 0) {
    return Errno();
  }
  return 0;
}

int WritableTree::RemoveXattr(Ino ino, std::string_view name) {
  if (PrivateXattr(name)) return ENODATA;
  std::unique_lock lock(mu_);
  Inode* in = Materialize(ino);
  if (in == nullptr || in->gone) return ENOENT;
  if (!in->upper) {
    // Only copy up for an xattr that is there.
    std::string unused;
    lock.unlock();
    if (int err = GetXattr(ino, name, &unused)) return err;
    lock.lock();
  }
  if (int err = in->type == S_IFDIR ? CopyUpDir(in) : CopyUpMeta(in)) return err;
  if (XattrOf(in).Remove(std::string(name).c_str()) != 0) return Errno();
  return 0;
}

int WritableTree::Statfs(struct statvfs* out) {
  if (::fstatvfs(scratch_.upper_fd(), out) != 0) return Errno();
  out->f_namemax = kNameMax;
  return 0;
}

}  // namespace layerfs
