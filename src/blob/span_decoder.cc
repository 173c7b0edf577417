#include "blob/span_decoder.h"

#include <zlib.h>
#include <zstd.h>

#ifdef LAYERFS_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace layerfs {
namespace {

constexpr size_t kInChunk = 128u << 10;
constexpr size_t kDiscard = 64u << 10;

Status Bad(const ByteSource& blob, uint64_t near, const std::string& what) {
  return Status::Corrupt(blob.name() + ": " + what + " near byte " + std::to_string(near));
}

// The compressed input of one decode: the blob from `pos` to `end`, in chunks.
class Input {
 public:
  Input(const ByteSource& blob, uint64_t pos, uint64_t end)
      : blob_(blob), pos_(pos), end_(std::min(end, blob.size())) {
    thread_local std::vector<char> chunk(kInChunk);
    buf_ = chunk.data();
  }
  // The next chunk (empty at the end), or an error.
  Result<std::string_view> Next() {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kInChunk, end_ - pos_));
    if (n > 0) LAYERFS_RETURN_IF_ERROR(blob_.ReadAt(pos_, buf_, n));
    pos_ += n;
    return std::string_view(buf_, n);
  }
  uint64_t pos() const { return pos_; }

 private:
  const ByteSource& blob_;
  uint64_t pos_;
  uint64_t end_;
  char* buf_ = nullptr;
};

// Where the next output goes: first `skip` bytes into a scratch buffer, then `out`.
struct Output {
  uint64_t skip;
  char* out;
  size_t size;
  size_t done = 0;

  bool full() const { return skip == 0 && done == size; }
  // The next place to write to, and its room.
  std::pair<char*, size_t> Room() {
    thread_local std::vector<char> discard(kDiscard);
    if (skip > 0) return {discard.data(), static_cast<size_t>(std::min<uint64_t>(skip, kDiscard))};
    return {out + done, size - done};
  }
  void Wrote(size_t n) {
    if (skip > 0) {
      skip -= n;
    } else {
      done += n;
    }
  }
};

Result<std::string> Window(const ByteSource& blob, const CheckpointRef& cp) {
  std::string w(cp.window_raw, '\0');
  if (cp.window_raw == 0) return w;
  size_t n = ZSTD_decompress(w.data(), w.size(), cp.window.data(), cp.window.size());
  if (ZSTD_isError(n) || n != w.size()) return Bad(blob, cp.in, "a checkpoint window is damaged");
  return w;
}

Result<uint8_t> ByteBefore(const ByteSource& blob, const CheckpointRef& cp) {
  char c;
  LAYERFS_RETURN_IF_ERROR(blob.ReadAt(cp.in - 1, &c, 1));
  return static_cast<uint8_t>(c);
}

Status InflateZlib(const ByteSource& blob, const CheckpointRef& cp, Input& in, Output& out) {
  z_stream s{};
  if (inflateInit2(&s, -15) != Z_OK) return Status::Error(ENOMEM, "inflateInit2");
  std::unique_ptr<z_stream, int (*)(z_stream*)> end(&s, inflateEnd);
  if (cp.bits > 0) {
    LAYERFS_ASSIGN_OR_RETURN(uint8_t b, ByteBefore(blob, cp));
    inflatePrime(&s, cp.bits, b >> (8 - cp.bits));
  }
  LAYERFS_ASSIGN_OR_RETURN(std::string window, Window(blob, cp));
  if (!window.empty()) {
    inflateSetDictionary(&s, reinterpret_cast<const Bytef*>(window.data()),
                         static_cast<uInt>(window.size()));
  }
  while (!out.full()) {
    if (s.avail_in == 0) {
      LAYERFS_ASSIGN_OR_RETURN(std::string_view chunk, in.Next());
      if (chunk.empty()) return Bad(blob, in.pos(), "the gzip data ends early");
      s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(chunk.data()));
      s.avail_in = static_cast<uInt>(chunk.size());
    }
    auto [dst, room] = out.Room();
    s.next_out = reinterpret_cast<Bytef*>(dst);
    s.avail_out = static_cast<uInt>(room);
    int r = inflate(&s, Z_NO_FLUSH);
    out.Wrote(room - s.avail_out);
    if (r == Z_STREAM_END && !out.full()) {
      return Bad(blob, in.pos(), "the gzip member ends before the checkpoint's span");
    }
    if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
      return Bad(
          blob, in.pos(),
          std::string("corrupt gzip data (") + (s.msg != nullptr ? s.msg : "zlib error") + ")");
    }
  }
  return Status::Ok();
}

#ifdef LAYERFS_HAVE_ISAL
Status InflateIsal(const ByteSource& blob, const CheckpointRef& cp, Input& in, Output& out) {
  thread_local std::unique_ptr<inflate_state> state(new inflate_state);
  inflate_state& s = *state;
  isal_inflate_init(&s);
  s.crc_flag = ISAL_DEFLATE;
  LAYERFS_ASSIGN_OR_RETURN(std::string window, Window(blob, cp));
  if (!window.empty() && isal_inflate_set_dict(&s, reinterpret_cast<uint8_t*>(window.data()),
                                               static_cast<uint32_t>(window.size())) != COMP_OK) {
    return Bad(blob, cp.in, "a checkpoint window is damaged");
  }
  if (cp.bits > 0) {
    LAYERFS_ASSIGN_OR_RETURN(uint8_t b, ByteBefore(blob, cp));
    s.read_in = b >> (8 - cp.bits);
    s.read_in_length = cp.bits;
  }
  bool input_done = false;
  while (!out.full()) {
    if (s.avail_in == 0 && !input_done) {
      LAYERFS_ASSIGN_OR_RETURN(std::string_view chunk, in.Next());
      input_done = chunk.empty();
      s.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(chunk.data()));
      s.avail_in = static_cast<uint32_t>(chunk.size());
    }
    auto [dst, room] = out.Room();
    s.next_out = reinterpret_cast<uint8_t*>(dst);
    s.avail_out = static_cast<uint32_t>(room);
    int r = isal_inflate(&s);
    size_t wrote = room - s.avail_out;
    out.Wrote(wrote);
    if (r != ISAL_DECOMP_OK) {
      return Bad(blob, in.pos(), "corrupt gzip data (ISA-L error " + std::to_string(r) + ")");
    }
    if (out.full()) break;
    if (s.block_state == ISAL_BLOCK_FINISH || s.block_state == ISAL_BLOCK_INPUT_DONE) {
      if (wrote == 0)
        return Bad(blob, in.pos(), "the gzip member ends before the checkpoint's span");
    } else if (input_done && wrote == 0) {
      return Bad(blob, in.pos(), "the gzip data ends early");
    }
  }
  return Status::Ok();
}
#endif

Status DecodeZstd(const ByteSource& blob, Input& in, Output& out) {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(),
                                                                       ZSTD_freeDCtx);
  if (!dctx) return Status::Error(ENOMEM, "ZSTD_createDCtx");
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_only);
  ZSTD_inBuffer zin{nullptr, 0, 0};
  while (!out.full()) {
    if (zin.pos == zin.size) {
      LAYERFS_ASSIGN_OR_RETURN(std::string_view chunk, in.Next());
      if (chunk.empty()) return Bad(blob, in.pos(), "the zstd data ends early");
      zin = {chunk.data(), chunk.size(), 0};
    }
    auto [dst, room] = out.Room();
    ZSTD_outBuffer zout{dst, room, 0};
    size_t r = ZSTD_decompressStream(dctx.get(), &zout, &zin);
    out.Wrote(zout.pos);
    if (ZSTD_isError(r)) {
      return Bad(blob, in.pos(), std::string("corrupt zstd data (") + ZSTD_getErrorName(r) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace

bool HaveIsal() {
#ifdef LAYERFS_HAVE_ISAL
  return true;
#else
  return false;
#endif
}

Inflater DefaultInflater() {
  const char* want = std::getenv("LAYERFS_INFLATE");
  if (want != nullptr && std::strcmp(want, "zlib") == 0) return Inflater::kZlib;
  return HaveIsal() ? Inflater::kIsal : Inflater::kZlib;
}

std::string_view InflaterName(Inflater i) { return i == Inflater::kIsal ? "ISA-L" : "zlib"; }

Status DecodeFrom(const ByteSource& blob, IndexCodec codec, Inflater inflater,
                  const CheckpointRef& cp, uint64_t in_end, uint64_t skip, char* out, size_t size) {
  if (cp.in > blob.size() || (cp.bits > 0 && cp.in == 0)) {
    return Bad(blob, cp.in, "a checkpoint lies outside the blob");
  }
  Input in(blob, cp.in, in_end);
  Output o{skip, out, size};
  if (codec == kIndexCodecZstd) return DecodeZstd(blob, in, o);
#ifdef LAYERFS_HAVE_ISAL
  if (inflater == Inflater::kIsal) return InflateIsal(blob, cp, in, o);
#else
  (void)inflater;
#endif
  return InflateZlib(blob, cp, in, o);
}

}  // namespace layerfs
