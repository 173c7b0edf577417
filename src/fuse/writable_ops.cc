// The operations of a writable mount: each decodes its request, makes one WritableTree call and
// replies. Inode numbers are WritableTree's (image inodes keep their read-only numbers); lookups
// of image inodes are counted in Filesystem as in a read-only mount, the others in WritableTree.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuse/op_util.h"
#include "tree/writable_tree.h"

namespace layerfs {
namespace {

static_assert(WritableTree::kSetMode == FUSE_SET_ATTR_MODE);
static_assert(WritableTree::kSetUid == FUSE_SET_ATTR_UID);
static_assert(WritableTree::kSetGid == FUSE_SET_ATTR_GID);
static_assert(WritableTree::kSetSize == FUSE_SET_ATTR_SIZE);
static_assert(WritableTree::kSetAtime == FUSE_SET_ATTR_ATIME);
static_assert(WritableTree::kSetMtime == FUSE_SET_ATTR_MTIME);
static_assert(WritableTree::kSetAtimeNow == FUSE_SET_ATTR_ATIME_NOW);
static_assert(WritableTree::kSetMtimeNow == FUSE_SET_ATTR_MTIME_NOW);
static_assert(WritableTree::kSetCtime == FUSE_SET_ATTR_CTIME);

WritableTree& Tree(fuse_req_t req) { return *Fs(req).writable(); }
// The caller of a request, in the image's ids (a host id the mount does not map stands for the
// overflow id, as the kernel does for ids a user namespace does not map).
WritableTree::Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  const FsOptions& o = Fs(req).options();
  return {o.uid_map.ToImage(ctx->uid).value_or(IdMap::kOverflowId),
          o.gid_map.ToImage(ctx->gid).value_or(IdMap::kOverflowId)};
}

// Turns one id of a chown (a uid or a gid, as `map` says) into the image's, in place: 0, or
// EINVAL for an id the mount does not map (as chown(2) answers for an id outside the caller's
// user namespace). Under --owner=self every file shows as the caller's, so a chown to the caller
// changes nothing: `flag` is dropped from `to_set`.
template <typename Id>
int IdToImage(const IdMap& map, int flag, Id* id, int* to_set) {
  if (!(*to_set & flag)) return 0;
  if (map.squashes() && map.ToHost(0) == *id) {
    *to_set &= ~flag;
  } else if (auto image_id = map.ToImage(*id)) {
    *id = *image_id;
  } else {
    return EINVAL;
  }
  return 0;
}

// The owner of a chown, in the image's ids.
int ChownToImage(const FsOptions& o, struct stat* attr, int* to_set) {
  if (int err = IdToImage(o.uid_map, FUSE_SET_ATTR_UID, &attr->st_uid, to_set)) return err;
  return IdToImage(o.gid_map, FUSE_SET_ATTR_GID, &attr->st_gid, to_set);
}

fuse_entry_param EntryOf(const Filesystem& fs, const struct stat& st) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = st.st_ino;
  e.attr = st;
  fs.ShowIds(&e.attr);
  e.generation = 1;
  e.attr_timeout = fs.options().attr_timeout;
  e.entry_timeout = fs.options().entry_timeout;
  return e;
}

// An entry reply for an inode WritableTree has already counted, if it is one of its own.
void ReplyEntry(fuse_req_t req, const struct stat& st) {
  Filesystem& fs = Fs(req);
  fuse_entry_param e = EntryOf(fs, st);
  const bool image = fs.writable()->IsImageIno(e.ino);
  if (image) fs.AddLookup(static_cast<uint32_t>(e.ino - 1));
  if (fuse_reply_entry(req, &e) != 0) {
    if (image) {
      fs.Forget(static_cast<uint32_t>(e.ino - 1), 1);
    } else {
      fs.writable()->Forget(e.ino, 1);
    }
  }
}

void ReplyEntryOrErr(fuse_req_t req, int err, const struct stat& st) {
  if (err != 0) return (void)fuse_reply_err(req, err);
  ReplyEntry(req, st);
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "lookup", [&] {
    struct stat st;
    int err = Tree(req).Lookup(parent, name, &st);
    if (err == ENOENT) {
      // A negative entry: the kernel drops it itself when the name is created through the mount.
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      e.entry_timeout = Fs(req).options().entry_timeout;
      return (void)fuse_reply_entry(req, &e);
    }
    ReplyEntryOrErr(req, err, st);
  });
}

void ForgetOne(Filesystem& fs, fuse_ino_t ino, uint64_t count) {
  if (fs.writable()->IsImageIno(ino)) {
    const auto node = static_cast<uint32_t>(ino - 1);
    fs.Forget(node, count);
    if (fs.LookupCount(node) == 0) fs.writable()->ForgetImage(ino);
  } else {
    fs.writable()->Forget(ino, count);
  }
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guarded(req, "getattr", [&] {
    struct stat st;
    if (int err = Tree(req).GetAttr(ino, &st)) return (void)fuse_reply_err(req, err);
    Fs(req).ShowIds(&st);
    fuse_reply_attr(req, &st, Fs(req).options().attr_timeout);
  });
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Guarded(req, "setattr", [&] {
    struct stat st;
    if (int err = ChownToImage(Fs(req).options(), attr, &to_set)) {
      return (void)fuse_reply_err(req, err);
    }
    if (int err = Tree(req).SetAttr(ino, *attr, to_set, &st)) {
      return (void)fuse_reply_err(req, err);
    }
    Fs(req).ShowIds(&st);
    fuse_reply_attr(req, &st, Fs(req).options().attr_timeout);
  });
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guarded(req, "readlink", [&] {
    std::string target;
    if (int err = Tree(req).Readlink(ino, &target)) return (void)fuse_reply_err(req, err);
    fuse_reply_readlink(req, target.c_str());
  });
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Guarded(req, "mknod", [&] {
    struct stat st;
    ReplyEntryOrErr(req, Tree(req).Mknod(parent, name, mode, rdev, CallerOf(req), &st), st);
  });
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Guarded(req, "mkdir", [&] {
    struct stat st;
    ReplyEntryOrErr(req, Tree(req).Mkdir(parent, name, mode, CallerOf(req), &st), st);
  });
}

void OpSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  Guarded(req, "symlink", [&] {
    struct stat st;
    ReplyEntryOrErr(req, Tree(req).Symlink(parent, name, target, CallerOf(req), &st), st);
  });
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  Guarded(req, "link", [&] {
    struct stat st;
    ReplyEntryOrErr(req, Tree(req).Link(ino, parent, name, &st), st);
  });
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "unlink", [&] { fuse_reply_err(req, Tree(req).Unlink(parent, name)); });
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "rmdir", [&] { fuse_reply_err(req, Tree(req).Rmdir(parent, name)); });
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
              const char* new_name, unsigned flags) {
  Guarded(req, "rename", [&] {
    fuse_reply_err(req, Tree(req).Rename(parent, name, new_parent, new_name, flags));
  });
}

// Files are not opened: ENOSYS makes the kernel stop sending OPEN (and RELEASE) for this mount and
// keep every file's page cache, which stays right because every change goes through this mount.
// Reads and writes then name the inode, and O_TRUNC arrives as a SETATTR of the size.
void OpOpen(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, ENOSYS); }

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Guarded(req, "create", [&] {
    struct stat st;
    if (int err = Tree(req).Create(parent, name, mode, CallerOf(req), &st)) {
      return (void)fuse_reply_err(req, err);
    }
    fuse_entry_param e = EntryOf(Fs(req), st);
    fi->fh = 0;
    fi->keep_cache = 1;
    if (fuse_reply_create(req, &e, fi) != 0) Tree(req).Forget(e.ino, 1);
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guarded(req, "read", [&] {
    WritableTree::ReadSource src;
    if (int err = Tree(req).ReadFrom(ino, &src)) return (void)fuse_reply_err(req, err);
    if (src.fd) return ReplyFdRead(req, src.fd.get(), off, size);
    if (src.node == MergedTree::kNoNode) return (void)fuse_reply_err(req, EIO);
    ReplyImageRead(req, Fs(req), src.node, size, off);
  });
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info*) {
  Guarded(req, "write", [&] {
    size_t written = 0;
    if (int err = Tree(req).Write(ino, buf, size, off, &written)) {
      return (void)fuse_reply_err(req, err);
    }
    fuse_reply_write(req, written);
  });
}

// Nothing is buffered here, so there is nothing to flush at close: ENOSYS tells the kernel to stop
// sending FLUSH, one round trip per close saved.
void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, ENOSYS); }

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Guarded(req, "fsync", [&] { fuse_reply_err(req, Tree(req).Fsync(ino, datasync != 0)); });
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info*) {
  Guarded(req, "fallocate", [&] {
    fuse_reply_err(req, Tree(req).Fallocate(ino, mode, offset, length));
  });
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  Guarded(req, "lseek", [&] {
    WritableTree::ReadSource src;
    if (int err = Tree(req).ReadFrom(ino, &src)) return (void)fuse_reply_err(req, err);
    if (src.fd) {
      off_t pos = ::lseek(src.fd.get(), off, whence);
      if (pos < 0) return (void)fuse_reply_err(req, errno);
      return (void)fuse_reply_lseek(req, pos);
    }
    if (src.node == MergedTree::kNoNode) return (void)fuse_reply_err(req, EIO);
    ReplyImageLseek(req, Fs(req), src.node, off, whence);
  });
}

// Offsets are the tree's listing offsets (WritableTree::DirItem): no handle, so OPENDIR and
// RELEASEDIR are not needed (answered ENOSYS, as on a read-only mount, the kernel stops sending
// them and caches listings, dropping them itself when the directory changes through this mount).
void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Filesystem& fs = Fs(req);
  WritableTree& tree = *fs.writable();
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  // As many entries as could fit: a FUSE_DIRENTPLUS is at least 152 bytes, a FUSE_DIRENT 32.
  const size_t max = size / (plus ? 152 : 32) + 1;
  std::vector<WritableTree::DirItem> items;
  if (int err = tree.ReadDir(ino, static_cast<uint64_t>(off), max, &items)) {
    return (void)fuse_reply_err(req, err);
  }
  std::vector<char> buf(size);
  size_t used = 0;
  auto add = [&](const char* name, fuse_ino_t child, mode_t type, off_t next, bool dot) {
    size_t need;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      if (!dot) {
        // An entry removed since it was listed is left out.
        struct stat st;
        if (tree.GetAttr(child, &st, /*count=*/true) != 0) return true;
        e = EntryOf(fs, st);
      } else {
        // "." and ".." carry no attributes (the kernel takes no reference on them), but a
        // directory entry with inode number 0 is one readdir(3) skips.
        e.attr.st_mode = S_IFDIR;
        e.attr.st_ino = child;
      }
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next);
      if (need > size - used) {
        if (!dot && !tree.IsImageIno(child)) tree.Forget(child, 1);
        return false;
      }
      if (!dot && tree.IsImageIno(child)) fs.AddLookup(static_cast<uint32_t>(child - 1));
    } else {
      struct stat st = {};
      st.st_ino = child;
      st.st_mode = type;
      need = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
      if (need > size - used) return false;
    }
    used += need;
    return true;
  };
  bool room = true;
  if (off == 0) room = add(".", ino, S_IFDIR, 1, true);
  if (room && off <= 1) room = add("..", ino, S_IFDIR, 2, true);
  for (size_t i = 0; room && i < items.size(); ++i) {
    const WritableTree::DirItem& item = items[i];
    room = add(item.name.c_str(), item.ino, item.type, static_cast<off_t>(item.next), false);
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpOpendir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, ENOSYS); }

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guarded(req, "readdir", [&] { ReadDir(req, ino, size, off, false); });
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guarded(req, "readdirplus", [&] { ReadDir(req, ino, size, off, true); });
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, 0); }

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guarded(req, "statfs", [&] {
    struct statvfs sv;
    if (int err = Tree(req).Statfs(&sv)) return (void)fuse_reply_err(req, err);
    fuse_reply_statfs(req, &sv);
  });
}

void ReplyXattrValue(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) return (void)fuse_reply_xattr(req, value.size());
  if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value.data(), value.size());
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guarded(req, "getxattr", [&] {
    std::string value;
    if (int err = Tree(req).GetXattr(ino, name, &value)) return (void)fuse_reply_err(req, err);
    ReplyXattrValue(req, value, size);
  });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guarded(req, "listxattr", [&] {
    std::string names;
    if (int err = Tree(req).ListXattr(ino, &names)) return (void)fuse_reply_err(req, err);
    ReplyXattrValue(req, names, size);
  });
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  Guarded(req, "setxattr", [&] {
    fuse_reply_err(req, Tree(req).SetXattr(ino, name, std::string_view(value, size), flags));
  });
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guarded(req, "removexattr", [&] { fuse_reply_err(req, Tree(req).RemoveXattr(ino, name)); });
}

void OpAccess(fuse_req_t req, fuse_ino_t, int) {
  // Permission bits are checked by the kernel (default_permissions).
  fuse_reply_err(req, 0);
}

fuse_lowlevel_ops MakeWritableOps() {
  fuse_lowlevel_ops ops = {};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForgetWith<ForgetOne>;
  ops.forget_multi = OpForgetMultiWith<ForgetOne>;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.symlink = OpSymlink;
  ops.link = OpLink;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.rename = OpRename;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.fsync = OpFsync;
  ops.fallocate = OpFallocate;
  ops.lseek = OpLseek;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.setxattr = OpSetxattr;
  ops.removexattr = OpRemovexattr;
  ops.access = OpAccess;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& WritableOps() {
  static const fuse_lowlevel_ops ops = MakeWritableOps();
  return ops;
}

}  // namespace layerfs
