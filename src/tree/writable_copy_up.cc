// WritableTree: copying image objects up into the scratch directory, and whiteouts.
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

#include "index/layer_data.h"

#include "base/file_util.h"
#include "base/log.h"
#include "base/path.h"
#include "tree/writable_tree_internal.h"

namespace layerfs {

using namespace writable_internal;  // NOLINT: the helpers of this class's files

// ---- Copy-up (mu_ held exclusively) ----

int WritableTree::MakeNode(int dirfd, const std::string& name, mode_t type, dev_t rdev,
                           mode_t* upper_type, UniqueFd* fd) {
  if (native_ids_) return ::mknodat(dirfd, name.c_str(), type | 0600, rdev) == 0 ? 0 : Errno();
  // A device, fifo or socket kept as an empty file and the override that says what it is.
  *upper_type = S_IFREG;
  fd->reset(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  return *fd ? 0 : Errno();
}

int WritableTree::SetOwnership(int fd, int dirfd, const std::string& name, mode_t upper_type,
                               const Override& want, std::optional<Override>* over) {
  const bool symlink = upper_type == S_IFLNK;
  if (native_ids_) {
    int rc = fd >= 0 ? ::fchown(fd, want.uid, want.gid)
                     : ::fchownat(dirfd, name.c_str(), want.uid, want.gid, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return Errno();
    if (!symlink) {
      rc = fd >= 0 ? ::fchmod(fd, want.mode & 07777)
                   : ::fchmodat(dirfd, name.c_str(), want.mode & 07777, 0);
      if (rc != 0) return Errno();
    }
    over->reset();
    return 0;
  }
  if (symlink) return 0;  // no user xattrs on symlinks: they stay the daemon's
  // The real mode always lets the daemon read and write (and search) what it keeps.
  const mode_t keep = (want.mode & 07777) | (upper_type == S_IFDIR ? 0700 : 0600);
  int rc = fd >= 0 ? ::fchmod(fd, keep) : ::fchmodat(dirfd, name.c_str(), keep, 0);
  if (rc != 0) return Errno();
  const std::string value = want.Encode();
  rc = fd >= 0 ? ::fsetxattr(fd, kOverrideXattr.data(), value.data(), value.size(), 0)
               : ::lsetxattr(ProcFdPath(dirfd, name).c_str(), kOverrideXattr.data(), value.data(),
                             value.size(), 0);
  if (rc != 0) return Errno();
  *over = want;
  return 0;
}

int WritableTree::ApplyImageMetadata(int fd, int dirfd, const std::string& name, uint32_t node,
                                     mode_t upper_type, std::optional<Override>* over) {
  struct stat st;
  tree_.Stat(node, &st);
  const bool symlink = upper_type == S_IFLNK;
  Override want{st.st_uid, st.st_gid, st.st_mode, st.st_rdev};
  if (int err = SetOwnership(fd, dirfd, name, upper_type, want, over)) return err;
  const IndexEntry& e = tree_.EntryOf(node);
  const LayerIndex& ix = tree_.layer(tree_.LayerOf(node)).index;
  for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
    std::string key(ix.xattr_name(e, k));
    std::string_view value = ix.xattr_value(e, k);
    int rc = fd >= 0 ? ::fsetxattr(fd, key.c_str(), value.data(), value.size(), 0)
                     : ::lsetxattr(ProcFdPath(dirfd, name).c_str(), key.c_str(), value.data(),
                                   value.size(), 0);
    // An xattr the scratch file system cannot hold (trusted.* without root, security.* labels
    // the LSM refuses) is not worth failing the change for: the image still has it.
    if (rc != 0 && errno != EPERM && errno != ENOTSUP && errno != EACCES) return Errno();
  }
  struct timespec times[2] = {st.st_mtim, st.st_mtim};
  int rc = fd >= 0 && !symlink ? ::futimens(fd, times)
                               : ::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : Errno();
}

WritableTree::Inode* WritableTree::ParentOf(Inode* dir) {
  if (!dir->names.empty()) return dir->names[0].dir;
  if (dir->image_node == MergedTree::kRoot || dir->image_node == kNoNode) return nullptr;
  return Materialize(Ino{tree_.Parent(dir->image_node)} + 1);
}

std::string WritableTree::NameOf(Inode* dir) const {
  if (!dir->names.empty()) return dir->names[0].name;
  return std::string(tree_.Name(dir->image_node));
}

int WritableTree::CopyUpDir(Inode* dir) {
  if (dir->dir) return 0;
  if (dir->gone || dir->type != S_IFDIR) return ENOENT;
  Inode* parent = ParentOf(dir);
  if (parent == nullptr) return EIO;  // the root always has its DirState
  if (int err = CopyUpDir(parent)) return err;
  const std::string name = NameOf(dir);
  const int work = scratch_.work_fd();
  const std::string tmp = scratch_.TempName();
  if (::mkdirat(work, tmp.c_str(), 0700) != 0) return Errno();
  UniqueFd fd(::openat(work, tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  std::optional<Override> over;
  int err = fd ? ApplyImageMetadata(fd.get(), work, tmp, dir->image_node, S_IFDIR, &over)
               : Errno();
  KeepTimes keep(parent->dir->fd.get());
  if (err == 0 && ::renameat(work, tmp.c_str(), parent->dir->fd.get(), name.c_str()) != 0) {
    err = Errno();
  }
  if (err != 0) {
    ::unlinkat(work, tmp.c_str(), AT_REMOVEDIR);
    return err;
  }
  dir->dir = std::make_unique<DirState>();
  dir->dir->fd = std::move(fd);
  dir->upper = true;
  dir->over = over;
  dir->names = {Name{parent, name}};
  parent->dir->Put(name, dir);
  return 0;
}

const std::vector<uint32_t>& WritableTree::LinkGroup(uint32_t inode_node) {
  if (!link_groups_built_) {
    for (uint32_t n = 0; n < tree_.node_count(); ++n) {
      if (!tree_.IsDir(n) && tree_.Nlink(n) > 1) link_groups_[tree_.InodeOf(n)].push_back(n);
    }
    link_groups_built_ = true;
  }
  return link_groups_[inode_node];
}

int WritableTree::CopyUpOneName(Inode* in, Inode* parent, const std::string& name,
                                bool with_data) {
  const int work = scratch_.work_fd();
  const std::string tmp = scratch_.TempName();
  const uint32_t node = in->data_node;
  mode_t upper_type = in->type;
  UniqueFd fd;
  int err = 0;
  bool copy_data = with_data;
  switch (in->type) {
    case S_IFREG: {
      fd.reset(::openat(work, tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd) return Errno();
      if (!copy_data) {
        // A metadata copy names its origin in an xattr. An origin that the scratch file system
        // cannot hold as an xattr value (ext4: one block, so a path over ~4 KiB fails with
        // ENOSPC), or that would not fit the PATH_MAX buffer it is read back into, gets its
        // content copied instead.
        std::string origin = tree_.PathOf(node);
        copy_data = origin.size() >= PATH_MAX ||
                    ::fsetxattr(fd.get(), kMetacopyXattr.data(), origin.data(), origin.size(),
                                0) != 0;
      }
      if (copy_data) {
        err = CopyContent(node, fd.get());
        if (err == 0 && ::fdatasync(fd.get()) != 0) err = Errno();
      }
      break;
    }
    case S_IFLNK: {
      std::string target(tree_.LinkTarget(node));
      if (::symlinkat(target.c_str(), work, tmp.c_str()) != 0) return Errno();
      break;
    }
    default: {
      struct stat st;
      tree_.Stat(node, &st);
      if (int e = MakeNode(work, tmp, in->type, st.st_rdev, &upper_type, &fd)) return e;
      break;
    }
  }
  std::optional<Override> over;
  if (err == 0) err = ApplyImageMetadata(fd.get(), work, tmp, node, upper_type, &over);
  KeepTimes keep(parent->dir->fd.get());
  if (err == 0 && ::renameat(work, tmp.c_str(), parent->dir->fd.get(), name.c_str()) != 0) {
    err = Errno();
  }
  if (err != 0) {
    ::unlinkat(work, tmp.c_str(), 0);
    return err;
  }
  in->upper = true;
  in->over = over;
  in->metacopy.store(in->type == S_IFREG && !copy_data, std::memory_order_release);
  in->names.push_back(Name{parent, name});
  parent->dir->Put(name, in);
  return 0;
}

int WritableTree::CopyUpMeta(Inode* in) {
  if (in->upper) return 0;
  if (in->gone) return ENOENT;
  if (in->type == S_IFDIR) return CopyUpDir(in);
  if (in->image_node == kNoNode) return EIO;
  std::vector<uint32_t> single = {in->image_node};
  const std::vector<uint32_t>& names =
      tree_.Nlink(in->image_node) > 1 ? LinkGroup(in->image_node) : single;
  for (uint32_t n : names) {
    Inode* parent = Materialize(Ino{tree_.Parent(n)} + 1);
    std::string name(tree_.Name(n));
    // Only the names that still show this inode: others were removed or replaced.
    if (Resolve(parent->ino, name) != in->ino) continue;
    if (int err = CopyUpDir(parent)) return err;
    if (!in->upper) {
      const bool with_data = in->type == S_IFREG && !scratch_.xattrs();
      if (int err = CopyUpOneName(in, parent, name, with_data)) return err;
      continue;
    }
    const Name& first = in->names[0];
    KeepTimes keep(parent->dir->fd.get());
    if (::linkat(first.dir->dir->fd.get(), first.name.c_str(), parent->dir->fd.get(),
                 name.c_str(), 0) != 0) {
      return Errno();
    }
    in->names.push_back(Name{parent, name});
    parent->dir->Put(name, in);
  }
  return in->upper ? 0 : ENOENT;
}

int WritableTree::CopyContent(uint32_t node, int out) const {
  const Layer& layer = tree_.layer(tree_.LayerOf(node));
  Status s = CopyEntry(layer, tree_.EntryOf(node), out);
  if (s.ok()) return 0;
  // A layer's bytes that cannot be read (the scratch file system's own errors are the caller's).
  if (s.code() == EIO) LogError("copy-up: {}", s.message());
  return s.code();
}

int WritableTree::FillData(Inode* in, bool truncate_to_zero) {
  if (!in->metacopy.load(std::memory_order_acquire)) return 0;
  UniqueFd fd;
  {
    std::shared_lock lock(mu_);
    if (int err = OpenUpper(in, O_WRONLY, &fd)) return err;
  }
  // A crash before the xattr goes leaves a metadata copy whose partial content nobody reads.
  if (::ftruncate(fd.get(), 0) != 0) return Errno();
  if (!truncate_to_zero) {
    if (int err = CopyContent(in->data_node, fd.get())) return err;
    if (::fdatasync(fd.get()) != 0) return Errno();
  }
  if (::fremovexattr(fd.get(), kMetacopyXattr.data()) != 0 && errno != ENODATA) return Errno();
  in->metacopy.store(false, std::memory_order_release);
  return 0;
}

int WritableTree::CopyUpOrphan(Inode* in) {
  // Deleted from the image's view while a process still has it open, and now written: a copy
  // without a name, kept open for as long as the inode lives.
  const int work = scratch_.work_fd();
  UniqueFd fd(::openat(work, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd) {
    const std::string tmp = scratch_.TempName();
    fd.reset(::openat(work, tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return Errno();
    ::unlinkat(work, tmp.c_str(), 0);
  }
  if (int err = CopyContent(in->data_node, fd.get())) return err;
  std::optional<Override> over;
  if (int err = ApplyImageMetadata(fd.get(), work, ".", in->data_node, S_IFREG, &over)) {
    return err;
  }
  in->over = over;
  in->orphan = std::move(fd);
  in->upper = true;
  in->metacopy.store(false, std::memory_order_release);
  return 0;
}

int WritableTree::DetachDir(Inode* dir) {
  if (int err = CopyUpDir(dir)) return err;
  KeepTimes keep(dir->dir->fd.get());
  // Everything below must be in upper/ and stop merging with the image below its old path.
  for (const auto& [name, child] : dir->dir->entries) {
    if (child->type == S_IFDIR && child->lower_dir != kNoNode) {
      if (int err = DetachDir(child)) return err;
    }
  }
  const uint32_t lower = LowerDir(dir->ino);
  if (lower != kNoNode) {
    for (uint32_t c : tree_.Children(lower)) {
      std::string name(tree_.Name(c));
      if (dir->dir->entries.count(name) != 0 || dir->dir->whiteouts.count(name) != 0) continue;
      Inode* child = Materialize(Ino{tree_.InodeOf(c)} + 1);
      int err = child->type == S_IFDIR ? DetachDir(child) : CopyUpMeta(child);
      if (err != 0) return err;
    }
    UniqueFd marker(::openat(dir->dir->fd.get(), std::string(kOpaqueMarker).c_str(),
                             O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!marker) return Errno();
    dir->dir->opaque = true;
    for (const std::string& w : dir->dir->whiteouts) {
      ::unlinkat(dir->dir->fd.get(), WhiteoutName(w).c_str(), 0);
    }
    dir->dir->whiteouts.clear();
  }
  dir->lower_dir = kNoNode;
  return 0;
}

int WritableTree::MakeWhiteout(Inode* dir, const std::string& name) {
  if (dir->dir->whiteouts.count(name) != 0 || dir->dir->opaque) return 0;
  std::string wh = WhiteoutName(name);
  UniqueFd fd(::openat(dir->dir->fd.get(), wh.c_str(),
                       O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Errno();
  dir->dir->whiteouts.insert(name);
  return 0;
}

void WritableTree::DropWhiteout(Inode* dir, const std::string& name) {
  auto it = dir->dir->whiteouts.find(name);
  if (it == dir->dir->whiteouts.end()) return;
  if (::unlinkat(dir->dir->fd.get(), WhiteoutName(name).c_str(), 0) == 0 || errno == ENOENT) {
    dir->dir->whiteouts.erase(it);
  }
}

}  // namespace layerfs
