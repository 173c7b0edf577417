// What the read-only and the writable operation tables share.
#ifndef LAYERFS_FUSE_OP_UTIL_H_
#define LAYERFS_FUSE_OP_UTIL_H_

#include "fuse/ops.h"

#include <new>
#include <stdexcept>

#include "base/log.h"
#include "fuse/filesystem.h"

namespace layerfs {

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

// FORGET and BATCH_FORGET, giving the lookups back through `ForgetOne`.
template <void (*ForgetOne)(Filesystem&, fuse_ino_t, uint64_t)>
void OpForgetWith(fuse_req_t req, fuse_ino_t ino, uint64_t count) {
  ForgetOne(Fs(req), ino, count);
  fuse_reply_none(req);
}
template <void (*ForgetOne)(Filesystem&, fuse_ino_t, uint64_t)>
void OpForgetMultiWith(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Filesystem& fs = Fs(req);
  for (size_t i = 0; i < count; ++i) ForgetOne(fs, forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

// Replies with `size` bytes of `fd` at `pos`: copied when small, spliced when large.
void ReplyFdRead(fuse_req_t req, int fd, off_t pos, size_t size);
// Replies with up to `size` bytes at `off` of the image file of merged-tree node `node`.
void ReplyImageRead(fuse_req_t req, Filesystem& fs, uint32_t node, size_t size, off_t off);
// Replies to SEEK_DATA/SEEK_HOLE at `off` in the image file of node `node`.
void ReplyImageLseek(fuse_req_t req, Filesystem& fs, uint32_t node, off_t off, int whence);
// The INIT handler of both tables.
void OpInit(void* userdata, fuse_conn_info* conn);
// The table of a writable mount (writable_ops.cc).
const fuse_lowlevel_ops& WritableOps();

}  // namespace layerfs

#endif  // LAYERFS_FUSE_OP_UTIL_H_
