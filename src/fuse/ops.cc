// The FUSE low-level operations of every layerfs mount. Each decodes its request, makes one call
// of the mount's MountTree (tree/mount_tree.h: read-only or writable, the operations do not know
// which) and ends in exactly one fuse_reply_*. No exception leaves an operation: Guarded() turns
// one into an error reply. Owners cross here: the tree speaks the image's ids, the kernel the
// host's (FsOptions::uid_map, gid_map).
#include "fuse/ops.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/log.h"
#include "fuse/filesystem.h"
#include "index/layer_data.h"

namespace layerfs {
namespace {

inline Filesystem& Fs(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }

// Runs one operation; an exception becomes an error reply (nothing may unwind into libfuse).
template <typename F>
void Guarded(fuse_req_t req, const char* op, F&& body) noexcept {
  try {
    body();
  } catch (const std::bad_alloc&) {
    LogError("{}: out of memory", op);
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    LogError("{}: {}", op, e.what());
    fuse_reply_err(req, EIO);
  }
}

// Zeros for the holes of sparse files: an untouched anonymous mapping reads as the shared zero
// page and costs no memory.
const char* ZeroPages(size_t size) {
  static constexpr size_t kSize = 64u << 20;
  static const char* zeros = [] {
    void* p = ::mmap(nullptr, kSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<const char*>(p);
  }();
  return size <= kSize ? zeros : nullptr;
}

// Small reads are copied: for them one pread and one write to /dev/fuse cost less than setting up
// a splice through a pipe (about 10% off reading every file of a typical image).
constexpr size_t kCopyReadMax = 64u << 10;

// Replies with `size` bytes of `fd` at `pos`: copied when small, spliced when large.
void ReplyFdRead(fuse_req_t req, int fd, off_t pos, size_t size) {
  if (size <= kCopyReadMax) {
    thread_local std::vector<char> copy(kCopyReadMax);
    ssize_t got = ::pread(fd, copy.data(), size, pos);
    if (got < 0) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_buf(req, copy.data(), static_cast<size_t>(got));
  }
  fuse_bufvec buf = {};
  buf.count = 1;
  buf.buf[0].size = size;
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = fd;
  buf.buf[0].pos = pos;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void ReplyImageRead(fuse_req_t req, Filesystem& fs, uint32_t node, size_t size, off_t off) {
  const IndexEntry& e = fs.image().EntryOf(node);
  if (static_cast<EntryType>(e.type) != EntryType::kRegular) {
    return (void)fuse_reply_err(
        req, static_cast<EntryType>(e.type) == EntryType::kDirectory ? EISDIR : EINVAL);
  }
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  const Layer& layer = fs.image().layer(fs.image().LayerOf(node));
  if (!layer.data->Intact()) return (void)fuse_reply_err(req, EIO);
  thread_local std::vector<ReadSegment> segments;
  segments.clear();
  size_t total = PlanRead(layer, e, static_cast<uint64_t>(off), size, &segments);
  if (total == 0) return (void)fuse_reply_buf(req, nullptr, 0);
  if (segments.size() == 1 && !segments[0].hole) {
    FileSpan span = layer.data->FileAt(segments[0].pos);
    if (span.fd >= 0 && span.length >= total) {
      return ReplyFdRead(req, span.fd, static_cast<off_t>(span.pos), total);
    }
  }
  // Several runs (a sparse file: data and zeros, still without copying file data), or bytes that
  // are not a file's, which are read into memory first.
  std::vector<char> storage(sizeof(fuse_bufvec) + segments.size() * sizeof(fuse_buf));
  auto* vec = new (storage.data()) fuse_bufvec{};
  vec->count = segments.size();
  // Room for all of it, once: the buffers below point into it.
  thread_local std::vector<char> copied;
  if (copied.size() < total) copied.resize(total);
  size_t copied_used = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const ReadSegment& seg = segments[i];
    fuse_buf& b = vec->buf[i];
    b = fuse_buf{};
    b.size = seg.length;
    if (seg.hole) {
      const char* zeros = ZeroPages(seg.length);
      if (zeros == nullptr) return (void)fuse_reply_err(req, EIO);
      b.mem = const_cast<char*>(zeros);
      continue;
    }
    FileSpan span = layer.data->FileAt(seg.pos);
    if (span.fd >= 0 && span.length >= seg.length) {
      b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
      b.fd = span.fd;
      b.pos = static_cast<off_t>(span.pos);
      continue;
    }
    char* dst = copied.data() + copied_used;
    Status s = layer.data->ReadAt(seg.pos, dst, seg.length);
    if (!s.ok()) {
      LogError("{}: {}", layer.label, s.message());
      return (void)fuse_reply_err(req, EIO);
    }
    b.mem = dst;
    copied_used += seg.length;
  }
  fuse_reply_data(req, vec, FUSE_BUF_SPLICE_MOVE);
}

void ReplyImageLseek(fuse_req_t req, Filesystem& fs, uint32_t node, off_t off, int whence) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  const LayerIndex& ix = fs.image().layer(fs.image().LayerOf(node)).index;
  auto pos = SeekEntry(ix, fs.image().EntryOf(node), static_cast<uint64_t>(off), whence);
  if (!pos.ok()) return (void)fuse_reply_err(req, pos.status().code());
  fuse_reply_lseek(req, static_cast<off_t>(*pos));
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  const Filesystem& fs = *static_cast<const Filesystem*>(userdata);
  // libfuse requires the INIT reply to repeat the max_read of the mount options.
  if (fs.options().max_read != 0) conn->max_read = fs.options().max_read;
  auto enable = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  enable(FUSE_CAP_ASYNC_READ);
  enable(FUSE_CAP_SPLICE_WRITE);
  enable(FUSE_CAP_SPLICE_MOVE);
  enable(FUSE_CAP_READDIRPLUS);
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;  // every listing carries attributes: `find` needs them
  enable(FUSE_CAP_PARALLEL_DIROPS);
  enable(FUSE_CAP_CACHE_SYMLINKS);
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;  // layer data never changes: keep the page cache
  conn->time_gran = 1;
  // max_write also sets the largest request in pages (FUSE_MAX_PAGES), reads included. Reads are
  // as large as the read-ahead window (MountOptions::readahead_kb) up to this; 512 KiB is the
  // largest reply libfuse can splice through its 1 MiB pipe (pipe-max-size) without falling back
  // to a copy through a freshly allocated buffer.
  conn->max_write = 512u << 10;
  conn->max_readahead = 4u << 20;
  // OPEN is answered ENOSYS: O_TRUNC must come as a SETATTR, not with the OPEN.
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // The kernel clears setuid/setgid bits on write, truncate and chown, as it would for a local
  // file system (it knows whether the writer may keep them), and sends the change as a SETATTR.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
}

static_assert(MountTree::kSetMode == FUSE_SET_ATTR_MODE);
static_assert(MountTree::kSetUid == FUSE_SET_ATTR_UID);
static_assert(MountTree::kSetGid == FUSE_SET_ATTR_GID);
static_assert(MountTree::kSetSize == FUSE_SET_ATTR_SIZE);
static_assert(MountTree::kSetAtime == FUSE_SET_ATTR_ATIME);
static_assert(MountTree::kSetMtime == FUSE_SET_ATTR_MTIME);
static_assert(MountTree::kSetAtimeNow == FUSE_SET_ATTR_ATIME_NOW);
static_assert(MountTree::kSetMtimeNow == FUSE_SET_ATTR_MTIME_NOW);
static_assert(MountTree::kSetCtime == FUSE_SET_ATTR_CTIME);

MountTree& Tree(fuse_req_t req) { return Fs(req).tree(); }
// The caller of a request, in the image's ids (a host id the mount does not map stands for the
// overflow id, as the kernel does for ids a user namespace does not map).
MountTree::Caller CallerOf(fuse_req_t req) {
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

// An entry reply for an inode the tree has counted a lookup of: given back if the reply fails
// (the request was interrupted), as the kernel then holds no reference.
void ReplyEntry(fuse_req_t req, const struct stat& st) {
  Filesystem& fs = Fs(req);
  fuse_entry_param e = EntryOf(fs, st);
  if (fuse_reply_entry(req, &e) != 0) fs.tree().Forget(e.ino, 1);
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

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t count) {
  Tree(req).Forget(ino, count);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  MountTree& tree = Tree(req);
  for (size_t i = 0; i < count; ++i) tree.Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
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
    MountTree::ReadSource src;
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
  Guarded(req, "fallocate",
          [&] { fuse_reply_err(req, Tree(req).Fallocate(ino, mode, offset, length)); });
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  Guarded(req, "lseek", [&] {
    MountTree::ReadSource src;
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

// Offsets are the tree's listing offsets (MountTree::DirItem): no handle, so OPENDIR and
// RELEASEDIR are not needed. Answered ENOSYS, the kernel stops sending them and caches listings,
// dropping them itself when the directory changes through this mount.
void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Filesystem& fs = Fs(req);
  MountTree& tree = fs.tree();
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  // As many entries as could fit: a FUSE_DIRENTPLUS is at least 152 bytes, a FUSE_DIRENT 32.
  const size_t max = size / (plus ? 152 : 32) + 1;
  thread_local std::vector<MountTree::DirItem> items;
  items.clear();
  if (int err = tree.ReadDir(ino, static_cast<uint64_t>(off), max, &items)) {
    return (void)fuse_reply_err(req, err);
  }
  thread_local std::vector<char> buf;
  buf.resize(size);
  size_t used = 0;
  for (const MountTree::DirItem& item : items) {
    const off_t next = static_cast<off_t>(item.next);
    const bool dot = item.next <= MountTree::kListFirst;  // "." and ".."
    size_t need;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      if (!dot) {
        // An entry removed since it was listed is left out.
        struct stat st;
        if (tree.GetAttr(item.ino, &st, /*count=*/true) != 0) continue;
        e = EntryOf(fs, st);
      } else {
        // "." and ".." carry no attributes (the kernel takes no reference on them), but a
        // directory entry with inode number 0 is one readdir(3) skips.
        e.attr.st_mode = S_IFDIR;
        e.attr.st_ino = item.ino;
      }
      need =
          fuse_add_direntry_plus(req, buf.data() + used, size - used, item.name.c_str(), &e, next);
      if (need > size - used) {
        if (!dot) tree.Forget(item.ino, 1);
        break;
      }
    } else {
      struct stat st = {};
      st.st_ino = item.ino;
      st.st_mode = item.type;
      need = fuse_add_direntry(req, buf.data() + used, size - used, item.name.c_str(), &st, next);
      if (need > size - used) break;
    }
    used += need;
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

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops = {};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
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

const fuse_lowlevel_ops& LayerfsOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace layerfs
