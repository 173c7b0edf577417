// Each operation decodes its request, asks the merged tree or the layer reader one question, and
// ends in exactly one fuse_reply_*. No exception leaves an operation: Guarded() turns one into an
// error reply.
//
// Inode numbers: ino = node + 1, where node is the merged-tree node that stands for the inode
// (MergedTree::InodeOf), so FUSE_ROOT_ID (1) is the root node 0. Inodes live as long as the mount,
// so FORGET only settles the lookup counts.
#include "fuse/ops.h"
#include "fuse/op_util.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/path.h"
#include "fuse/filesystem.h"
#include "index/layer_data.h"

namespace layerfs {
namespace {

// The node an inode number stands for, or kNoNode for a number this mount never handed out.
uint32_t NodeOf(const Filesystem& fs, fuse_ino_t ino) {
  if (ino == 0 || ino > fs.tree().node_count()) return MergedTree::kNoNode;
  return static_cast<uint32_t>(ino - 1);
}

void FillEntry(const Filesystem& fs, uint32_t node, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  fs.tree().Stat(node, &e->attr);
  fs.ShowIds(&e->attr);
  e->ino = e->attr.st_ino;
  e->generation = 1;
  e->attr_timeout = fs.options().attr_timeout;
  e->entry_timeout = fs.options().entry_timeout;
}

// Zeros for the holes of sparse files: an untouched anonymous mapping reads as the shared zero
// page and costs no memory.
const char* ZeroPages(size_t size) {
  static constexpr size_t kSize = 64u << 20;
  static const char* zeros = [] {
    void* p = ::mmap(nullptr, kSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                     0);
    return p == MAP_FAILED ? nullptr : static_cast<const char*>(p);
  }();
  return size <= kSize ? zeros : nullptr;
}

// Small reads are copied: for them one pread and one write to /dev/fuse cost less than setting up
// a splice through a pipe (about 10% off reading every file of a typical image).
constexpr size_t kCopyReadMax = 64u << 10;

}  // namespace

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
  const IndexEntry& e = fs.tree().EntryOf(node);
  if (static_cast<EntryType>(e.type) != EntryType::kRegular) {
    return (void)fuse_reply_err(req, static_cast<EntryType>(e.type) == EntryType::kDirectory
                                         ? EISDIR
                                         : EINVAL);
  }
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  const Layer& layer = fs.tree().layer(fs.tree().LayerOf(node));
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
  thread_local std::vector<char> copied;
  size_t to_copy = 0;
  for (const ReadSegment& seg : segments) {
    if (!seg.hole) {
      FileSpan span = layer.data->FileAt(seg.pos);
      if (span.fd < 0 || span.length < seg.length) to_copy += seg.length;
    }
  }
  copied.resize(to_copy);
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
  const LayerIndex& ix = fs.tree().layer(fs.tree().LayerOf(node)).index;
  auto pos = SeekEntry(ix, fs.tree().EntryOf(node), static_cast<uint64_t>(off), whence);
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
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;   // layer data never changes: keep the page cache
  conn->time_gran = 1;
  // max_write also sets the largest request in pages (FUSE_MAX_PAGES), reads included. Reads are
  // as large as the read-ahead window (MountOptions::readahead_kb) up to this; 512 KiB is the
  // largest reply libfuse can splice through its 1 MiB pipe (pipe-max-size) without falling back
  // to a copy through a freshly allocated buffer.
  conn->max_write = 512u << 10;
  conn->max_readahead = 4u << 20;
  // Writable mounts answer OPEN with ENOSYS: O_TRUNC must come as a SETATTR, not with the OPEN.
  if (fs.writable() != nullptr) conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // The kernel clears setuid/setgid bits on write, truncate and chown, as it would for a local
  // file system (it knows whether the writer may keep them), and sends the change as a SETATTR.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
}

namespace {

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "lookup", [&] {
    Filesystem& fs = Fs(req);
    uint32_t dir = NodeOf(fs, parent);
    if (dir == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    if (!fs.tree().IsDir(dir)) return (void)fuse_reply_err(req, ENOTDIR);
    std::string_view n(name);
    if (n.size() > kNameMax) return (void)fuse_reply_err(req, ENAMETOOLONG);
    uint32_t child = fs.tree().Lookup(dir, n);
    fuse_entry_param e;
    if (child == MergedTree::kNoNode) {
      // A negative entry: the kernel caches the absence as long as it would the name.
      std::memset(&e, 0, sizeof(e));
      e.entry_timeout = fs.options().entry_timeout;
      fuse_reply_entry(req, &e);
      return;
    }
    FillEntry(fs, child, &e);
    fs.AddLookup(fs.tree().InodeOf(child));
    if (fuse_reply_entry(req, &e) != 0) fs.Forget(fs.tree().InodeOf(child), 1);
  });
}

void ForgetOne(Filesystem& fs, fuse_ino_t ino, uint64_t count) {
  uint32_t node = NodeOf(fs, ino);
  if (node == MergedTree::kNoNode) {
    LogError("forget of unknown inode {}", ino);
    return;
  }
  if (!fs.Forget(node, count)) {
    LogError("inode {}: the kernel forgot more lookups than it was given", ino);
  }
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guarded(req, "getattr", [&] {
    Filesystem& fs = Fs(req);
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    struct stat st;
    fs.tree().Stat(node, &st);
    fs.ShowIds(&st);
    fuse_reply_attr(req, &st, fs.options().attr_timeout);
  });
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guarded(req, "readlink", [&] {
    Filesystem& fs = Fs(req);
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    if (static_cast<EntryType>(fs.tree().EntryOf(node).type) != EntryType::kSymlink) {
      return (void)fuse_reply_err(req, EINVAL);
    }
    std::string target(fs.tree().LinkTarget(node));
    fuse_reply_readlink(req, target.c_str());
  });
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, "open", [&] {
    Filesystem& fs = Fs(req);
    if (fs.options().read_only) {
      // Stateless reads: ENOSYS tells the kernel to stop sending OPEN and RELEASE for this mount
      // and to keep the page cache of every file (FOPEN_KEEP_CACHE), one round trip per open saved.
      return (void)fuse_reply_err(req, ENOSYS);
    }
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
      return (void)fuse_reply_err(req, EROFS);
    }
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guarded(req, "read", [&] {
    Filesystem& fs = Fs(req);
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    ReplyImageRead(req, fs, node, size, off);
  });
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, "opendir", [&] {
    Filesystem& fs = Fs(req);
    if (fs.options().read_only) {
      // As for open: no OPENDIR/RELEASEDIR round trips, and the kernel caches listings.
      return (void)fuse_reply_err(req, ENOSYS);
    }
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    if (!fs.tree().IsDir(node)) return (void)fuse_reply_err(req, ENOTDIR);
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
  });
}

// Directory offsets: 0 is the start, 1 follows ".", 2 follows "..", 3 + i follows child i. They
// stay valid for the life of the mount because the children never change.
void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Filesystem& fs = Fs(req);
  const MergedTree& tree = fs.tree();
  uint32_t node = NodeOf(fs, ino);
  if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
  if (!tree.IsDir(node)) return (void)fuse_reply_err(req, ENOTDIR);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  std::vector<char> buf(size);
  size_t used = 0;
  auto children = tree.Children(node);
  const uint64_t end = 2 + children.size();
  for (uint64_t pos = static_cast<uint64_t>(off); pos < end; ++pos) {
    uint32_t child;
    const char* name;
    std::string name_storage;
    if (pos == 0) {
      child = node;
      name = ".";
    } else if (pos == 1) {
      child = tree.Parent(node);
      name = "..";
    } else {
      child = children[pos - 2];
      name_storage = tree.Name(child);
      name = name_storage.c_str();
    }
    const off_t next = static_cast<off_t>(pos + 1);
    size_t need;
    if (plus) {
      fuse_entry_param e;
      FillEntry(fs, child, &e);
      // "." and ".." carry attributes only: the kernel takes no reference on them.
      if (pos < 2) e.ino = 0;
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next);
      if (need > size - used) break;
      if (pos >= 2) fs.AddLookup(tree.InodeOf(child));
    } else {
      struct stat st = {};
      st.st_ino = tree.InodeOf(child) + 1;
      st.st_mode = tree.IsDir(child) ? S_IFDIR : 0;
      if (!tree.IsDir(child)) {
        struct stat full;
        tree.Stat(child, &full);
        st.st_mode = full.st_mode;
      }
      need = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
      if (need > size - used) break;
    }
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guarded(req, "readdir", [&] { ReadDir(req, ino, size, off, false); });
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guarded(req, "readdirplus", [&] { ReadDir(req, ino, size, off, true); });
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guarded(req, "statfs", [&] {
    Filesystem& fs = Fs(req);
    struct statvfs sv = {};
    uint64_t bytes = 0;
    for (const Layer& l : fs.tree().layers()) bytes += l.index.header().regular_bytes;
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = (bytes + 4095) / 4096;
    sv.f_files = fs.tree().visible_count();
    sv.f_namemax = kNameMax;
    fuse_reply_statfs(req, &sv);
  });
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guarded(req, "getxattr", [&] {
    Filesystem& fs = Fs(req);
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    const IndexEntry& e = fs.tree().EntryOf(node);
    const LayerIndex& ix = fs.tree().layer(fs.tree().LayerOf(node)).index;
    for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
      if (ix.xattr_name(e, k) != name) continue;
      std::string_view value = ix.xattr_value(e, k);
      if (size == 0) return (void)fuse_reply_xattr(req, value.size());
      if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
      return (void)fuse_reply_buf(req, value.data(), value.size());
    }
    fuse_reply_err(req, ENODATA);
  });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guarded(req, "listxattr", [&] {
    Filesystem& fs = Fs(req);
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    const IndexEntry& e = fs.tree().EntryOf(node);
    const LayerIndex& ix = fs.tree().layer(fs.tree().LayerOf(node)).index;
    std::string names;
    for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
      names += ix.xattr_name(e, k);
      names += '\0';
    }
    if (size == 0) return (void)fuse_reply_xattr(req, names.size());
    if (size < names.size()) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, names.data(), names.size());
  });
}

void OpAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  Guarded(req, "access", [&] {
    Filesystem& fs = Fs(req);
    if (NodeOf(fs, ino) == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    // Permission bits are checked by the kernel (default_permissions); what is left is the
    // read-only mount.
    fuse_reply_err(req, (mask & W_OK) && fs.options().read_only ? EROFS : 0);
  });
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  Guarded(req, "lseek", [&] {
    Filesystem& fs = Fs(req);
    uint32_t node = NodeOf(fs, ino);
    if (node == MergedTree::kNoNode) return (void)fuse_reply_err(req, ESTALE);
    ReplyImageLseek(req, fs, node, off, whence);
  });
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops = {};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForgetWith<ForgetOne>;
  ops.forget_multi = OpForgetMultiWith<ForgetOne>;
  ops.getattr = OpGetattr;
  ops.readlink = OpReadlink;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.statfs = OpStatfs;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.access = OpAccess;
  ops.lseek = OpLseek;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& LayerfsOps(bool writable) {
  static const fuse_lowlevel_ops read_only = MakeOps();
  return writable ? WritableOps() : read_only;
}

}  // namespace layerfs
