// WritableTree: reading what an earlier mount left in the scratch directory.
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

// ---- Loading an earlier mount's changes ----

Status WritableTree::Load() {
  std::unique_lock lock(mu_);
  Inode* root = Materialize(1);
  root->upper = true;
  root->dir = std::make_unique<DirState>();
  root->dir->fd.reset(::openat(scratch_.upper_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root->dir->fd) return Status::FromErrno(errno, scratch_.path() + "/upper");
  root->over = OverrideFor(ProcFdPath(root->dir->fd.get()), S_IFDIR);
  std::unordered_map<uint64_t, Inode*> by_upper_ino;
  if (int err = LoadDir(root, &by_upper_ino)) {
    return Status::FromErrno(err, scratch_.path() + "/upper: cannot read the changes");
  }
  // upper/ stands for the image's root: a fresh one takes the root's metadata.
  if (scratch_.fresh()) {
    int fd = root->dir->fd.get();
    if (int err = ApplyImageMetadata(fd, fd, ".", MergedTree::kRoot, S_IFDIR, &root->over)) {
      return Status::FromErrno(err, scratch_.path() + "/upper: cannot set the root's metadata");
    }
  }
  return Status::Ok();
}

int WritableTree::LoadDir(Inode* dir, std::unordered_map<uint64_t, Inode*>* by_upper_ino) {
  const int fd = dir->dir->fd.get();
  std::vector<std::string> names;
  if (int err = ListNames(fd, &names)) return err;
  for (const std::string& n : names) {
    ClassifiedName c = ClassifyName(n);
    if (c.kind == NameKind::kOpaque) dir->dir->opaque = true;
    if (c.kind == NameKind::kWhiteout) dir->dir->whiteouts.emplace(c.target);
  }
  if (dir->dir->opaque) {
    dir->lower_dir = kNoNode;
    dir->dir->whiteouts.clear();
  }
  for (const std::string& n : names) {
    if (ClassifyName(n).kind != NameKind::kPlain) continue;
    struct stat st;
    if (::fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno();
    const uint32_t lower = dir->lower_dir == kNoNode ? kNoNode : tree_.Lookup(dir->lower_dir, n);
    Inode* child;
    if (S_ISDIR(st.st_mode)) {
      if (lower != kNoNode && tree_.IsDir(lower)) {
        child = Materialize(Ino{lower} + 1);
      } else {
        child = NewInode(S_IFDIR);
      }
      child->upper = true;
      child->dir = std::make_unique<DirState>();
      child->dir->fd.reset(::openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!child->dir->fd) return Errno();
      child->over = OverrideFor(ProcFdPath(fd, n), S_IFDIR);
      child->names = {Name{dir, n}};
      dir->dir->Put(n, child);
      if (int err = LoadDir(child, by_upper_ino)) return err;
      continue;
    }
    auto seen = st.st_nlink > 1 ? by_upper_ino->find(st.st_ino) : by_upper_ino->end();
    if (seen != by_upper_ino->end()) {
      child = seen->second;
    } else {
      child = NewInode(st.st_mode & S_IFMT);
      child->upper = true;
      if (st.st_nlink > 1) (*by_upper_ino)[st.st_ino] = child;
      if (S_ISREG(st.st_mode)) {
        child->over = OverrideFor(ProcFdPath(fd, n), S_IFREG);
        if (child->over) child->type = child->over->mode & S_IFMT;  // perhaps a device kept as a file
      }
      if (S_ISREG(st.st_mode)) {
        char origin[PATH_MAX];
        ssize_t len = ::lgetxattr(ProcFdPath(fd, n).c_str(), kMetacopyXattr.data(), origin,
                                  sizeof(origin));
        if (len >= 0) {
          child->metacopy.store(true);
          auto path = NormalizePath(std::string_view(origin, static_cast<size_t>(len)));
          uint32_t node = path.ok() ? tree_.LookupPath(*path) : kNoNode;
          if (node != kNoNode && TypeOf(tree_, node) == S_IFREG) {
            child->data_node = tree_.InodeOf(node);
          } else {
            LogWarning("{}: its content came from {}, which the image does not have; reads fail",
                       Printable(n), Printable(std::string_view(origin, static_cast<size_t>(len))));
          }
        }
      }
    }
    child->names.push_back(Name{dir, n});
    dir->dir->Put(n, child);
  }
  return 0;
}

}  // namespace layerfs
