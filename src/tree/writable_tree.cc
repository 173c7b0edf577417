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
#include "index/layer_data.h"
#include "tar/whiteout.h"

namespace layerfs {
namespace {

constexpr uint32_t kNoNode = MergedTree::kNoNode;

int Errno() { return errno != 0 ? errno : EIO; }

// Keeps an upper directory's atime and mtime across a change the mount makes on its own account: a
// copy-up adds a name that was already visible, which must not show as a change of the directory.
class KeepTimes {
 public:
  explicit KeepTimes(int dirfd) : fd_(dirfd), ok_(::fstat(dirfd, &st_) == 0) {}
  ~KeepTimes() {
    if (!ok_) return;
    const struct timespec times[2] = {st_.st_atim, st_.st_mtim};
    ::futimens(fd_, times);
  }
  KeepTimes(const KeepTimes&) = delete;
  KeepTimes& operator=(const KeepTimes&) = delete;

 private:
  int fd_;
  struct stat st_;
  bool ok_;
};

std::string WhiteoutName(std::string_view name) {
  return std::string(kWhiteoutPrefix) + std::string(name);
}

// The override recorded on an upper object whose own type is `upper_type`, if it fits that type:
// a directory stays a directory; a file may stand for a device, fifo or socket.
std::optional<Override> OverrideFor(const std::string& path, mode_t upper_type) {
  std::optional<Override> o = ReadOverride(path);
  if (o && (upper_type == S_IFDIR) != S_ISDIR(o->mode)) return std::nullopt;
  return o;
}

bool PrivateXattr(std::string_view name) {
  return name.substr(0, kPrivateXattrPrefix.size()) == kPrivateXattrPrefix;
}

// Mode bits of a tree node's type.
mode_t TypeOf(const MergedTree& tree, uint32_t node) {
  struct stat st;
  tree.Stat(node, &st);
  return st.st_mode & S_IFMT;
}

}  // namespace

// Where an xattr call reaches an upper object: its open directory, the path of its name below
// its directory's descriptor (not followed: it may be a symlink), or the file an orphan's
// descriptor stands for (followed: /proc/self/fd/N is the file itself).
struct XattrTarget {
  int fd = -1;
  std::string path;
  bool follow = false;

  ssize_t Get(const char* name, void* value, size_t size) const {
    if (fd >= 0) return ::fgetxattr(fd, name, value, size);
    return follow ? ::getxattr(path.c_str(), name, value, size)
                  : ::lgetxattr(path.c_str(), name, value, size);
  }
  ssize_t List(char* list, size_t size) const {
    if (fd >= 0) return ::flistxattr(fd, list, size);
    return follow ? ::listxattr(path.c_str(), list, size) : ::llistxattr(path.c_str(), list, size);
  }
  int Set(const char* name, const void* value, size_t size, int flags) const {
    if (fd >= 0) return ::fsetxattr(fd, name, value, size, flags);
    return follow ? ::setxattr(path.c_str(), name, value, size, flags)
                  : ::lsetxattr(path.c_str(), name, value, size, flags);
  }
  int Remove(const char* name) const {
    if (fd >= 0) return ::fremovexattr(fd, name);
    return follow ? ::removexattr(path.c_str(), name) : ::lremovexattr(path.c_str(), name);
  }
};

struct WritableTree::DirState {
  UniqueFd fd;                                          // the directory in upper/
  std::map<std::string, Inode*, std::less<>> entries;   // what upper/ holds, by name
  std::set<std::string, std::less<>> whiteouts;         // names with a `.wh.` file here
  bool opaque = false;                                  // holds `.wh..wh..opq`
  // The listing position of each name in `entries`, in the order the names arrived: a name the
  // directory merged below does not have is listed after that directory's names, in this order
  // (see ListFrom).
  std::map<uint64_t, std::string> order;
  std::map<std::string, uint64_t, std::less<>> seq;
  uint64_t next_seq = 0;

  void Put(const std::string& name, Inode* in) {
    entries[name] = in;
    if (seq.emplace(name, next_seq).second) order.emplace(next_seq++, name);
  }
  void Drop(std::string_view name) {
    auto e = entries.find(name);
    if (e != entries.end()) entries.erase(e);
    auto it = seq.find(name);
    if (it == seq.end()) return;
    order.erase(it->second);
    seq.erase(it);
  }
};

struct WritableTree::Inode {
  Inode(Ino i, uint32_t node) : ino(i), image_node(node) {}
  const Ino ino;
  const uint32_t image_node;            // the image inode's node, or kNoNode
  std::atomic<uint64_t> nlookup{0};     // inodes made through the mount only

  // Guarded by mu_.
  mode_t type = 0;
  bool upper = false;                   // exists in upper/ (a metadata copy counts)
  bool gone = false;                    // all its names were removed
  std::atomic<bool> metacopy{false};    // its content still comes from data_node
  uint32_t data_node = kNoNode;         // the image node with its content (image inodes)
  std::vector<Name> names;              // its names in upper/
  UniqueFd orphan;                      // O_PATH to it after its last name was removed
  uint32_t lower_dir = kNoNode;         // directories: the image directory merged below
  std::unique_ptr<DirState> dir;        // directories in upper/
  std::optional<Override> over;         // owner, mode, device kept in user.layerfs.override

  std::mutex data_mu;                   // filling in the content of a metadata copy
};

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

int WritableTree::ListFrom(Ino dir, uint64_t offset, size_t max, std::vector<DirItem>* out) const {
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
         i < children.size() && out->size() < max; ++i) {
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
    if (out->size() >= max) return 0;
  }
  if (state == nullptr) return 0;
  const uint64_t from = offset > kListFirst + kListUpper ? offset - kListFirst - kListUpper : 0;
  for (auto it = state->order.lower_bound(from); it != state->order.end() && out->size() < max;
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

int WritableTree::Unlink(Ino parent, std::string_view name_view) {
  std::unique_lock lock(mu_);
  const std::string name(name_view);
  Ino ino = Resolve(parent, name);
  if (ino == 0) return ENOENT;
  Inode* in = Materialize(ino);
  if (in->type == S_IFDIR) return EISDIR;
  Inode* p = Materialize(parent);
  // The other names of a hard-linked image file must stay one inode with it.
  if (!in->upper && in->image_node != kNoNode && tree_.Nlink(in->image_node) > 1) {
    if (int err = CopyUpMeta(in)) return err;
  }
  if (int err = CopyUpDir(p)) return err;
  if (LowerChild(parent, name) != kNoNode) {
    if (int err = MakeWhiteout(p, name)) return err;
  }
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
  Ino ino = Resolve(parent, name);
  if (ino == 0) return ENOENT;
  Inode* in = Materialize(ino);
  if (in->type != S_IFDIR) return ENOTDIR;
  if (!DirEmpty(ino)) return ENOTEMPTY;
  Inode* p = Materialize(parent);
  if (int err = CopyUpDir(p)) return err;
  if (LowerChild(parent, name) != kNoNode) {
    if (int err = MakeWhiteout(p, name)) return err;
  }
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

int WritableTree::ReadDir(Ino ino, uint64_t offset, size_t max, std::vector<DirItem>* out) {
  std::shared_lock lock(mu_);
  // "." and ".." first; ".." shows the directory's own number, as the kernel ignores it.
  const size_t dots = offset == 0 ? 2 : offset == 1 ? 1 : 0;
  std::vector<DirItem> items;
  if (int err = ListFrom(ino, offset, max > dots ? max - dots : 1, &items)) return err;
  if (offset == 0) out->push_back({".", ino, S_IFDIR, 1});
  if (offset <= 1) out->push_back({"..", ino, S_IFDIR, kListFirst});
  for (DirItem& item : items) out->push_back(std::move(item));
  return 0;
}

// ---- xattrs ----

int WritableTree::GetXattr(Ino ino, std::string_view name, std::string* value) {
  if (PrivateXattr(name)) return ENODATA;
  std::shared_lock lock(mu_);
  Inode* in = Find(ino);
  if (in == nullptr || !in->upper) {
    if (!IsImageIno(ino)) return ESTALE;
    uint32_t node = in != nullptr ? in->image_node : ImageNode(ino);
    const IndexEntry& e = tree_.EntryOf(node);
    const LayerIndex& ix = tree_.layer(tree_.LayerOf(node)).index;
    for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
      if (ix.xattr_name(e, k) == name) {
        *value = ix.xattr_value(e, k);
        return 0;
      }
    }
    return ENODATA;
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
    uint32_t node = in != nullptr ? in->image_node : ImageNode(ino);
    const IndexEntry& e = tree_.EntryOf(node);
    const LayerIndex& ix = tree_.layer(tree_.LayerOf(node)).index;
    for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
      *names += ix.xattr_name(e, k);
      *names += '\0';
    }
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
