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

WritableTree::WritableTree(const MergedTree& tree, ScratchDir scratch, bool native_owners)
    : tree_(tree),
      image_lookups_(tree.node_count()),
      scratch_(std::move(scratch)),
      native_ids_(native_owners),
      image_(new std::atomic<Inode*>[tree.node_count()]()),
      next_ino_(Ino{tree.node_count()} + 1) {}

WritableTree::~WritableTree() {
  for (uint32_t n = 0; n < tree_.node_count(); ++n) delete image_[n].load();
}

WritableTree::Inode* WritableTree::Find(Ino ino) const {
  if (IsImageIno(ino)) return image_[ImageNode(ino)].load(std::memory_order_acquire);
  auto it = made_.find(ino);
  return it == made_.end() ? nullptr : it->second.get();
}

WritableTree::Inode* WritableTree::FindUnlocked(Ino ino) const {
  if (IsImageIno(ino)) return image_[ImageNode(ino)].load(std::memory_order_acquire);
  // An inode made through the mount lives until the kernel forgets it, which it does only after
  // its last request: the pointer stays good after the lock is let go.
  std::shared_lock lock(mu_);
  return Find(ino);
}

WritableTree::Inode* WritableTree::Materialize(Ino ino) {
  if (!IsImageIno(ino)) return Find(ino);
  std::atomic<Inode*>& slot = image_[ImageNode(ino)];
  if (Inode* in = slot.load(std::memory_order_acquire)) return in;
  const uint32_t node = ImageNode(ino);
  auto* in = new Inode(ino, node);
  in->type = TypeOf(tree_, node);
  in->data_node = node;
  if (tree_.IsDir(node)) in->lower_dir = node;
  slot.store(in, std::memory_order_release);
  return in;
}

WritableTree::Inode* WritableTree::NewInode(mode_t type) {
  const Ino ino = next_ino_++;
  auto in = std::make_unique<Inode>(ino, kNoNode);
  in->type = type;
  Inode* raw = in.get();
  made_.emplace(ino, std::move(in));
  return raw;
}

// ---- Resolution (mu_ held, shared or exclusive) ----

WritableTree::Ino WritableTree::Resolve(Ino parent, std::string_view name) const {
  const Inode* p = Find(parent);
  uint32_t lower;
  if (p == nullptr) {
    if (!IsImageIno(parent) || !tree_.IsDir(ImageNode(parent))) return 0;
    lower = ImageNode(parent);
  } else {
    if (p->gone || p->type != S_IFDIR) return 0;
    if (p->dir) {
      auto it = p->dir->entries.find(name);
      if (it != p->dir->entries.end()) return it->second->ino;
      if (p->dir->opaque || p->dir->whiteouts.count(name)) return 0;
    }
    lower = p->lower_dir;
  }
  if (lower == kNoNode) return 0;
  uint32_t child = tree_.Lookup(lower, name);
  return child == kNoNode ? 0 : Ino{tree_.InodeOf(child)} + 1;
}

uint32_t WritableTree::LowerDir(Ino dir) const {
  const Inode* d = Find(dir);
  if (d == nullptr) return IsImageIno(dir) && tree_.IsDir(ImageNode(dir)) ? ImageNode(dir) : kNoNode;
  if (d->gone || (d->dir && d->dir->opaque)) return kNoNode;
  return d->lower_dir;
}

uint32_t WritableTree::LowerChild(Ino dir, std::string_view name) const {
  uint32_t lower = LowerDir(dir);
  return lower == kNoNode ? kNoNode : tree_.Lookup(lower, name);
}

int WritableTree::ListFrom(Ino dir, uint64_t offset, size_t limit,
                           std::vector<DirItem>* out) const {
  const Inode* d = Find(dir);
  const bool is_dir =
      d != nullptr ? d->type == S_IFDIR : IsImageIno(dir) && tree_.IsDir(ImageNode(dir));
  if (!is_dir) return ENOTDIR;
  if (d != nullptr && d->gone) return ENOENT;
  const DirState* state = d != nullptr ? d->dir.get() : nullptr;
  const uint32_t lower = LowerDir(dir);
  if (lower != kNoNode && offset < kListFirst + kListUpper) {
    auto children = tree_.Children(lower);
    for (uint64_t i = offset > kListFirst ? offset - kListFirst : 0;
         i < children.size() && out->size() < limit; ++i) {
      const uint32_t c = children[static_cast<size_t>(i)];
      std::string_view name = tree_.Name(c);
      const uint64_t next = kListFirst + i + 1;
      if (state != nullptr) {
        if (state->whiteouts.count(name) != 0) continue;
        auto it = state->entries.find(name);
        if (it != state->entries.end()) {
          out->push_back({std::string(name), it->second->ino, it->second->type, next});
          continue;
        }
      }
      out->push_back({std::string(name), Ino{tree_.InodeOf(c)} + 1, TypeOf(tree_, c), next});
    }
    if (out->size() >= limit) return 0;
  }
  if (state == nullptr) return 0;
  const uint64_t from = offset > kListFirst + kListUpper ? offset - kListFirst - kListUpper : 0;
  for (auto it = state->order.lower_bound(from); it != state->order.end() && out->size() < limit;
       ++it) {
    const std::string& name = it->second;
    // A name the directory below has is listed at its position there.
    if (lower != kNoNode && tree_.Lookup(lower, name) != kNoNode) continue;
    const Inode* in = state->entries.find(name)->second;
    out->push_back({name, in->ino, in->type, kListFirst + kListUpper + it->first + 1});
  }
  return 0;
}

bool WritableTree::DirEmpty(Ino dir) const {
  std::vector<DirItem> items;
  return ListFrom(dir, 0, 1, &items) != 0 || items.empty();
}

int WritableTree::UpperAt(Inode* in, int* dirfd, std::string* name) const {
  if (in->names.empty()) return ENOENT;
  *dirfd = in->names[0].dir->dir->fd.get();
  *name = in->names[0].name;
  return 0;
}

XattrTarget WritableTree::XattrOf(Inode* in) const {
  XattrTarget t;
  if (in->dir) {
    t.fd = in->dir->fd.get();
  } else if (!in->names.empty()) {
    t.path = ProcFdPath(in->names[0].dir->dir->fd.get(), in->names[0].name);
  } else if (in->orphan) {
    t.path = ProcFdPath(in->orphan.get());
    t.follow = true;
  }
  return t;
}

int WritableTree::UpperStat(Inode* in, struct stat* out) const {
  int rc;
  if (in->dir) {
    rc = ::fstat(in->dir->fd.get(), out);
  } else if (!in->names.empty()) {
    rc = ::fstatat(in->names[0].dir->dir->fd.get(), in->names[0].name.c_str(), out,
                   AT_SYMLINK_NOFOLLOW);
  } else if (in->orphan) {
    rc = ::fstatat(in->orphan.get(), "", out, AT_EMPTY_PATH);
    out->st_nlink = 0;
  } else {
    return ENOENT;
  }
  if (rc != 0) return Errno();
  out->st_ino = in->ino;
  if (in->over) {
    out->st_uid = in->over->uid;
    out->st_gid = in->over->gid;
    out->st_mode = in->over->mode;
    if (!S_ISREG(in->over->mode) && !S_ISDIR(in->over->mode)) {
      out->st_rdev = in->over->rdev;
      out->st_size = 0;
      out->st_blocks = 0;
    }
  }
  if (in->metacopy.load(std::memory_order_acquire) && in->data_node != kNoNode) {
    struct stat image;
    tree_.Stat(in->data_node, &image);
    out->st_size = image.st_size;
    out->st_blocks = image.st_blocks;
  }
  if (in->dir) out->st_nlink = 2 + CountSubdirs(in);
  return 0;
}

// The subdirectories a directory with a DirState shows (for st_nlink), without listing it.
nlink_t WritableTree::CountSubdirs(const Inode* dir) const {
  nlink_t n = 0;
  for (const auto& [name, in] : dir->dir->entries) n += in->type == S_IFDIR;
  const uint32_t lower = LowerDir(dir->ino);
  if (lower == kNoNode) return n;
  for (uint32_t c : tree_.Children(lower)) {
    if (!tree_.IsDir(c)) continue;
    std::string_view name = tree_.Name(c);
    if (dir->dir->entries.count(name) == 0 && dir->dir->whiteouts.count(name) == 0) ++n;
  }
  return n;
}

int WritableTree::StatLocked(Ino ino, struct stat* out) const {
  Inode* in = Find(ino);
  if (in == nullptr) {
    if (!IsImageIno(ino)) return ESTALE;
    tree_.Stat(ImageNode(ino), out);
    return 0;
  }
  if (in->upper) return UpperStat(in, out);
  tree_.Stat(in->image_node, out);
  if (in->gone) out->st_nlink = 0;
  return 0;
}

void WritableTree::RemoveName(Inode* in, Inode* dir, std::string_view name) {
  dir->dir->Drop(name);
  auto& names = in->names;
  names.erase(std::remove_if(names.begin(), names.end(),
                             [&](const Name& n) { return n.dir == dir && n.name == name; }),
              names.end());
  if (names.empty()) in->gone = true;
}

void WritableTree::MaybeFree(Inode* in) {
  if (in->image_node != kNoNode || !in->gone) return;
  if (in->nlookup.load() != 0) return;
  made_.erase(in->ino);
}

// ---- Operations ----

int WritableTree::Lookup(Ino parent, std::string_view name, struct stat* out) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  std::shared_lock lock(mu_);
  Ino ino = Resolve(parent, name);
  if (ino == 0) {
    const Inode* p = Find(parent);
    bool is_dir = p != nullptr ? p->type == S_IFDIR
                               : IsImageIno(parent) && tree_.IsDir(ImageNode(parent));
    return is_dir ? ENOENT : ENOTDIR;
  }
  if (int err = StatLocked(ino, out)) return err;
  CountLookup(ino);
  return 0;
}

int WritableTree::GetAttr(Ino ino, struct stat* out, bool count) {
  std::shared_lock lock(mu_);
  if (int err = StatLocked(ino, out)) return err;
  if (count) CountLookup(ino);
  return 0;
}

void WritableTree::ForgetImage(Ino ino) {
  Inode* in = FindUnlocked(ino);
  if (in == nullptr) return;
  std::unique_lock lock(mu_);
  // Nobody can reach a deleted file any more: its scratch copy can go.
  if (in->gone) in->orphan.reset();
}

void WritableTree::CountLookup(Ino ino) {
  if (IsImageIno(ino)) {
    image_lookups_.Add(ImageNode(ino));
  } else {
    Find(ino)->nlookup.fetch_add(1);
  }
}

void WritableTree::Forget(Ino ino, uint64_t count) {
  if (IsImageIno(ino)) {
    bool underflow = false;
    if (image_lookups_.Forget(ImageNode(ino), count, &underflow) == 0) ForgetImage(ino);
    if (underflow) LogError("inode {}: the kernel forgot more lookups than it was given", ino);
    return;
  }
  std::unique_lock lock(mu_);
  Inode* in = Find(ino);
  if (in == nullptr) return;
  uint64_t now = in->nlookup.load();
  in->nlookup.store(now >= count ? now - count : 0);
  MaybeFree(in);
}

int WritableTree::Readlink(Ino ino, std::string* target) {
  std::shared_lock lock(mu_);
  Inode* in = Find(ino);
  if (in == nullptr || !in->upper) {
    uint32_t node = in != nullptr ? in->image_node : ImageNode(ino);
    if (!IsImageIno(ino) || TypeOf(tree_, node) != S_IFLNK) return EINVAL;
    *target = tree_.LinkTarget(node);
    return 0;
  }
  if (in->type != S_IFLNK) return EINVAL;
  int dirfd;
  std::string name;
  if (int err = UpperAt(in, &dirfd, &name)) return err;
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(dirfd, name.c_str(), buf, sizeof(buf));
  if (n < 0) return Errno();
  target->assign(buf, static_cast<size_t>(n));
  return 0;
}

int WritableTree::CheckNewName(Ino parent, std::string_view name) const {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) {
    return EINVAL;
  }
  // `.wh.` names are the whiteouts of the scratch directory and of OCI layers: no layer can hold
  // a file by such a name.
  if (ClassifyName(name).kind != NameKind::kPlain) return EINVAL;
  const Inode* p = Find(parent);
  if (p != nullptr ? (p->type != S_IFDIR) : !(IsImageIno(parent) && tree_.IsDir(ImageNode(parent)))) {
    return ENOTDIR;
  }
  if (p != nullptr && p->gone) return ENOENT;
  if (Resolve(parent, name) != 0) return EEXIST;
  return 0;
}

int WritableTree::CreateEntry(Ino parent, std::string_view name_view, mode_t mode, dev_t rdev,
                              std::string_view target, const Caller& caller, int open_flags,
                              struct stat* out, UniqueFd* opened) {
  if (int err = CheckNewName(parent, name_view)) return err;
  const std::string name(name_view);
  Inode* p = Materialize(parent);
  if (int err = CopyUpDir(p)) return err;
  struct stat pst;
  if (int err = StatLocked(parent, &pst)) return err;
  const mode_t type = mode & S_IFMT;
  gid_t gid = caller.gid;
  if (pst.st_mode & S_ISGID) {
    gid = pst.st_gid;
    if (type == S_IFDIR) mode |= S_ISGID;
  }
  const bool lower_has = LowerChild(parent, name) != kNoNode;
  const int work = scratch_.work_fd();
  const std::string tmp = scratch_.TempName();
  mode_t upper_type = type;
  UniqueFd fd;
  int err = 0;
  switch (type) {
    case S_IFREG: {
      int flags = (open_flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_NOFOLLOW)) | O_CREAT |
                  O_EXCL | O_CLOEXEC | O_NOFOLLOW;
      fd.reset(::openat(work, tmp.c_str(), flags, 0600));
      if (!fd) return Errno();
      break;
    }
    case S_IFDIR:
      if (::mkdirat(work, tmp.c_str(), 0700) != 0) return Errno();
      fd.reset(::openat(work, tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) err = Errno();
      if (err == 0 && lower_has) {
        // Made where the image has (or had) something: nothing of that shows through.
        UniqueFd marker(::openat(fd.get(), std::string(kOpaqueMarker).c_str(),
                                 O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        if (!marker) err = Errno();
      }
      break;
    case S_IFLNK:
      if (::symlinkat(std::string(target).c_str(), work, tmp.c_str()) != 0) return Errno();
      break;
    default:
      if (int e = MakeNode(work, tmp, type, rdev, &upper_type, &fd)) return e;
      break;
  }
  std::optional<Override> over;
  if (err == 0) {
    err = SetOwnership(fd.get(), work, tmp, upper_type, Override{caller.uid, gid, mode, rdev},
                       &over);
  }
  if (err == 0 && ::renameat(work, tmp.c_str(), p->dir->fd.get(), name.c_str()) != 0) {
    err = Errno();
  }
  if (err != 0) {
    if (type == S_IFDIR) {
      if (fd) (void)RemoveContents(fd.get(), "work");
      ::unlinkat(work, tmp.c_str(), AT_REMOVEDIR);
    } else {
      ::unlinkat(work, tmp.c_str(), 0);
    }
    return err;
  }
  DropWhiteout(p, name);
  Inode* in = NewInode(type);
  in->upper = true;
  in->over = over;
  in->names.push_back(Name{p, name});
  p->dir->Put(name, in);
  if (type == S_IFDIR) {
    in->dir = std::make_unique<DirState>();
    in->dir->fd = std::move(fd);
    in->dir->opaque = lower_has;
  } else if (opened != nullptr) {
    *opened = std::move(fd);
  }
  if (int e = StatLocked(in->ino, out)) return e;
  in->nlookup.fetch_add(1);
  return 0;
}

int WritableTree::Mknod(Ino parent, std::string_view name, mode_t mode, dev_t rdev,
                        const Caller& caller, struct stat* out) {
  mode_t type = mode & S_IFMT;
  if (type == 0) mode |= S_IFREG;
  if (type == S_IFDIR || type == S_IFLNK) return EINVAL;
  std::unique_lock lock(mu_);
  return CreateEntry(parent, name, mode, rdev, {}, caller, O_RDONLY, out, nullptr);
}

int WritableTree::Mkdir(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
                        struct stat* out) {
  std::unique_lock lock(mu_);
  return CreateEntry(parent, name, S_IFDIR | (mode & 07777), 0, {}, caller, 0, out, nullptr);
}

int WritableTree::Symlink(Ino parent, std::string_view name, std::string_view target,
                          const Caller& caller, struct stat* out) {
  std::unique_lock lock(mu_);
  return CreateEntry(parent, name, S_IFLNK | 0777, 0, target, caller, 0, out, nullptr);
}

int WritableTree::Create(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
                         struct stat* out) {
  std::unique_lock lock(mu_);
  return CreateEntry(parent, name, S_IFREG | (mode & 07777), 0, {}, caller, O_RDONLY, out,
                     nullptr);
}

int WritableTree::Link(Ino ino, Ino parent, std::string_view name_view, struct stat* out) {
  std::unique_lock lock(mu_);
  if (int err = CheckNewName(parent, name_view)) return err;
  const std::string name(name_view);
  Inode* in = Materialize(ino);
  if (in == nullptr || in->gone) return ENOENT;
  if (in->type == S_IFDIR) return EPERM;
  if (int err = CopyUpMeta(in)) return err;
  Inode* p = Materialize(parent);
  if (int err = CopyUpDir(p)) return err;
  const Name& first = in->names[0];
  if (::linkat(first.dir->dir->fd.get(), first.name.c_str(), p->dir->fd.get(), name.c_str(),
               0) != 0) {
    return Errno();
  }
  DropWhiteout(p, name);
  in->names.push_back(Name{p, name});
  p->dir->Put(name, in);
  if (int err = StatLocked(in->ino, out)) return err;
  CountLookup(in->ino);
  return 0;
}

int WritableTree::ToRemove(Ino parent, const std::string& name, bool dir, Inode** in,
                           Inode** p) {
  const Ino ino = Resolve(parent, name);
  if (ino == 0) return ENOENT;
  *in = Materialize(ino);
  if (dir != ((*in)->type == S_IFDIR)) return dir ? ENOTDIR : EISDIR;
  if (dir && !DirEmpty(ino)) return ENOTEMPTY;
  *p = Materialize(parent);
  return 0;
}

int WritableTree::HideFromImage(Inode* p, Ino parent, const std::string& name) {
  if (int err = CopyUpDir(p)) return err;
  return LowerChild(parent, name) != kNoNode ? MakeWhiteout(p, name) : 0;
}

int WritableTree::Unlink(Ino parent, std::string_view name_view) {
  std::unique_lock lock(mu_);
  const std::string name(name_view);
  Inode *in, *p;
  if (int err = ToRemove(parent, name, /*dir=*/false, &in, &p)) return err;
  // The other names of a hard-linked image file must stay one inode with it.
  if (!in->upper && in->image_node != kNoNode && tree_.Nlink(in->image_node) > 1) {
    if (int err = CopyUpMeta(in)) return err;
  }
  if (int err = HideFromImage(p, parent, name)) return err;
  if (p->dir->entries.count(name) != 0) {
    if (in->names.size() == 1 && !in->orphan) {
      in->orphan.reset(::openat(p->dir->fd.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    }
    if (::unlinkat(p->dir->fd.get(), name.c_str(), 0) != 0) return Errno();
    RemoveName(in, p, name);
  } else {
    in->gone = true;
  }
  MaybeFree(in);
  return 0;
}

int WritableTree::Rmdir(Ino parent, std::string_view name_view) {
  std::unique_lock lock(mu_);
  const std::string name(name_view);
  Inode *in, *p;
  if (int err = ToRemove(parent, name, /*dir=*/true, &in, &p)) return err;
  if (int err = HideFromImage(p, parent, name)) return err;
  if (in->dir) {
    // Only whiteouts and the opaque marker are left in it.
    if (Status s = RemoveContents(in->dir->fd.get(), name); !s.ok()) return s.code();
    if (::unlinkat(p->dir->fd.get(), name.c_str(), AT_REMOVEDIR) != 0) return Errno();
    RemoveName(in, p, name);
    in->dir.reset();
  }
  in->gone = true;
  in->lower_dir = kNoNode;
  MaybeFree(in);
  return 0;
}

int WritableTree::Rename(Ino parent, std::string_view name_view, Ino new_parent,
                         std::string_view new_name_view, unsigned flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return EINVAL;
  const bool exchange = flags & RENAME_EXCHANGE;
  std::unique_lock lock(mu_);
  const std::string name(name_view), new_name(new_name_view);
  if (new_name.size() > kNameMax) return ENAMETOOLONG;
  if (ClassifyName(new_name).kind != NameKind::kPlain) return EINVAL;
  Ino s = Resolve(parent, name);
  if (s == 0) return ENOENT;
  Ino t = Resolve(new_parent, new_name);
  if ((flags & RENAME_NOREPLACE) && t != 0) return EEXIST;
  if (exchange && t == 0) return ENOENT;
  if (s == t) return 0;  // two names of one file: nothing to do (POSIX)
  Inode* src = Materialize(s);
  Inode* dst = t != 0 ? Materialize(t) : nullptr;
  if (dst != nullptr && !exchange) {
    if (src->type == S_IFDIR && dst->type != S_IFDIR) return ENOTDIR;
    if (src->type != S_IFDIR && dst->type == S_IFDIR) return EISDIR;
    if (dst->type == S_IFDIR && !DirEmpty(t)) return ENOTEMPTY;
  }
  Inode* p1 = Materialize(parent);
  Inode* p2 = Materialize(new_parent);
  const bool src_lower = LowerChild(parent, name) != kNoNode;
  const bool dst_lower = LowerChild(new_parent, new_name) != kNoNode;
  if (int err = CopyUpDir(p1)) return err;
  if (int err = CopyUpDir(p2)) return err;
  if (int err = src->type == S_IFDIR ? DetachDir(src) : CopyUpMeta(src)) return err;
  if (dst != nullptr && (exchange || (!dst->upper && dst->image_node != kNoNode &&
                                      dst->type != S_IFDIR && tree_.Nlink(dst->image_node) > 1))) {
    if (int err = dst->type == S_IFDIR ? DetachDir(dst) : CopyUpMeta(dst)) return err;
  }
  // A directory that lands where the image has something must not show it.
  auto make_opaque = [&](Inode* d) -> int {
    if (d->type != S_IFDIR || d->dir->opaque) return 0;
    UniqueFd marker(::openat(d->dir->fd.get(), std::string(kOpaqueMarker).c_str(),
                             O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    if (!marker) return Errno();
    d->dir->opaque = true;
    return 0;
  };
  if (dst_lower) {
    if (int err = make_opaque(src)) return err;
  }
  if (exchange && src_lower) {
    if (int err = make_opaque(dst)) return err;
  }
  if (dst != nullptr && !exchange && dst->dir) {
    if (Status st = RemoveContents(dst->dir->fd.get(), new_name); !st.ok()) return st.code();
  }
  if (!exchange && src_lower) {
    if (int err = MakeWhiteout(p1, name)) return err;
  }
  const bool dst_in_upper = p2->dir->entries.count(new_name) != 0;
  if (dst != nullptr && !exchange && dst_in_upper && dst->type != S_IFDIR &&
      dst->names.size() == 1 && !dst->orphan) {
    dst->orphan.reset(
        ::openat(p2->dir->fd.get(), new_name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  }
  unsigned native = flags & (RENAME_NOREPLACE | RENAME_EXCHANGE);
  if (::renameat2(p1->dir->fd.get(), name.c_str(), p2->dir->fd.get(), new_name.c_str(), native) !=
      0) {
    // File systems without renameat2 flags: NOREPLACE was checked above under the lock.
    if (!(errno == EINVAL && native == RENAME_NOREPLACE) ||
        ::renameat(p1->dir->fd.get(), name.c_str(), p2->dir->fd.get(), new_name.c_str()) != 0) {
      return Errno();
    }
  }
  auto rename_in = [](Inode* in, Inode* from, const std::string& from_name, Inode* to,
                      const std::string& to_name) {
    for (Name& n : in->names) {
      if (n.dir == from && n.name == from_name) {
        n.dir = to;
        n.name = to_name;
        return;
      }
    }
  };
  if (exchange) {
    p1->dir->Put(name, dst);
    p2->dir->Put(new_name, src);
    // Swap through a placeholder: the two names may be in one directory.
    rename_in(src, p1, name, nullptr, "");
    rename_in(dst, p2, new_name, p1, name);
    rename_in(src, nullptr, "", p2, new_name);
    return 0;
  }
  p1->dir->Drop(name);
  if (dst != nullptr) {
    if (dst_in_upper) {
      RemoveName(dst, p2, new_name);
    } else {
      dst->gone = true;
    }
    if (dst->type == S_IFDIR) {
      dst->dir.reset();
      dst->gone = true;
      dst->lower_dir = kNoNode;
    }
  }
  p2->dir->Put(new_name, src);
  rename_in(src, p1, name, p2, new_name);
  DropWhiteout(p2, new_name);
  if (dst != nullptr) MaybeFree(dst);
  return 0;
}

int WritableTree::ReadDir(Ino ino, uint64_t offset, size_t max, std::vector<DirItem>* out) {
  std::shared_lock lock(mu_);
  // "." and ".." first; ".." shows the directory's own number, as the kernel ignores it.
  const size_t before = out->size();
  if (offset == 0) out->push_back({".", ino, S_IFDIR, 1});
  if (offset <= 1) out->push_back({"..", ino, S_IFDIR, kListFirst});
  // ListFrom stops when `out` holds `limit` entries; at least one name after the dots.
  const size_t limit = before + std::max(max, out->size() - before + 1);
  if (int err = ListFrom(ino, offset, limit, out)) {
    out->resize(before);
    return err;
  }
  return 0;
}

}  // namespace layerfs
