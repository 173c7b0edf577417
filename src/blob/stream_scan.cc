#include "blob/stream_scan.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace layerfs {
namespace {

constexpr size_t kOutChunk = 256u << 10;

std::string CompressWindow(const uint8_t* data, size_t size) {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(),
                                                                       ZSTD_freeCCtx);
  std::string out(ZSTD_compressBound(size), '\0');
  size_t n = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), data, size, 1);
  if (ZSTD_isError(n)) return {};
  out.resize(n);
  return out;
}

class GzipScanner final : public StreamScanner {
 public:
  GzipScanner(uint64_t span, std::string name, Pull pull)
      : StreamScanner(kIndexCodecGzip, span, std::move(name), std::move(pull)),
        buf_(kWindowMax + kOutChunk) {
    if (inflateInit2(&strm_, 15 + 16) != Z_OK) error_ = Status::Error(ENOMEM, "inflateInit2");
  }
  ~GzipScanner() override { inflateEnd(&strm_); }

  ssize_t Next(const void** out) override {
    if (!error_.ok()) return -1;
    if (done_) return 0;
    // Keep the last window of output in front of the next: checkpoints copy it from there.
    size_t keep = std::min<size_t>(filled_, kWindowMax);
    std::memmove(buf_.data(), buf_.data() + filled_ - keep, keep);
    filled_ = keep;
    const size_t start = filled_;
    while (filled_ < buf_.size() && !done_) {
      if (strm_.avail_in == 0) {
        const void* p = nullptr;
        ssize_t n = pull_(&p);
        if (n < 0) return -1;
        if (n == 0) {
          if (in_member_ || members_ == 0) {
            error_ = Status::Corrupt(name_ + ": the gzip stream is truncated (it ends at byte " +
                                     std::to_string(in_total_) + ")");
            return -1;
          }
          done_ = true;
          break;
        }
        strm_.next_in = static_cast<Bytef*>(const_cast<void*>(p));
        strm_.avail_in = static_cast<uInt>(n);
        in_total_ += static_cast<uint64_t>(n);
        if (members_ == 0 && !in_member_ && !CheckMagic()) return -1;
      }
      if (!in_member_ && !StartMember()) {
        if (!error_.ok()) return -1;
        continue;  // padding consumed; more input needed
      }
      strm_.next_out = buf_.data() + filled_;
      strm_.avail_out = static_cast<uInt>(buf_.size() - filled_);
      int r = inflate(&strm_, Z_BLOCK);
      size_t produced = static_cast<size_t>(strm_.next_out - (buf_.data() + filled_));
      filled_ += produced;
      out_total_ += produced;
      if (r == Z_STREAM_END) {
        in_member_ = false;
        ++members_;
        continue;
      }
      if (r == Z_BUF_ERROR) continue;  // needs more input, or the output is full
      if (r != Z_OK) {
        error_ =
            Status::Corrupt(name_ + ": corrupt gzip data near byte " + std::to_string(Consumed()) +
                            " (" + (strm_.msg != nullptr ? strm_.msg : "zlib error") + ")");
        return -1;
      }
      if ((strm_.data_type & 128) && !(strm_.data_type & 64)) {
        const bool member_start = member_start_;
        member_start_ = false;
        const size_t w = member_start ? 0 : std::min<size_t>(filled_, kWindowMax);
        Checkpoint(Consumed(), static_cast<uint8_t>(strm_.data_type & 7), buf_.data() + filled_ - w,
                   w, member_start);
      }
    }
    if (done_) Finish();
    *out = buf_.data() + start;
    return static_cast<ssize_t>(filled_ - start);
  }

 private:
  uint64_t Consumed() const { return in_total_ - strm_.avail_in; }

  bool CheckMagic() {
    if (strm_.avail_in >= 2 && (strm_.next_in[0] != 0x1f || strm_.next_in[1] != 0x8b)) {
      error_ = Status::Corrupt(name_ + ": not gzip-compressed, though the image says it is");
      return false;
    }
    return true;
  }

  // Between members: skips zero padding; a non-zero byte starts the next member, unless it
  // follows padding. Returns whether a member is open.
  bool StartMember() {
    if (members_ > 0) {
      while (strm_.avail_in > 0 && strm_.next_in[0] == 0) {
        ++strm_.next_in;
        --strm_.avail_in;
        padded_ = true;
      }
      if (strm_.avail_in == 0) return false;
      if (padded_) {
        error_ = Status::Corrupt(name_ +
                                 ": data after the zero padding that ends the gzip "
                                 "stream, at byte " +
                                 std::to_string(Consumed()));
        return false;
      }
      inflateReset(&strm_);
    }
    in_member_ = true;
    member_start_ = true;
    return true;
  }

  z_stream strm_{};
  std::vector<uint8_t> buf_;
  size_t filled_ = 0;
  uint64_t in_total_ = 0;
  uint64_t members_ = 0;
  bool in_member_ = false;
  bool member_start_ = false;
  bool padded_ = false;
  bool done_ = false;
};

class ZstdScanner final : public StreamScanner {
 public:
  ZstdScanner(uint64_t span, std::string name, Pull pull)
      : StreamScanner(kIndexCodecZstd, span, std::move(name), std::move(pull)),
        ds_(ZSTD_createDStream()),
        buf_(kOutChunk) {
    if (ds_ == nullptr) error_ = Status::Error(ENOMEM, "ZSTD_createDStream");
    Checkpoint(0, 0, nullptr, 0, true);
  }
  ~ZstdScanner() override { ZSTD_freeDStream(ds_); }

  ssize_t Next(const void** out) override {
    if (!error_.ok()) return -1;
    if (done_) return 0;
    ZSTD_outBuffer o{buf_.data(), buf_.size(), 0};
    while (o.pos < o.size && !done_) {
      if (in_.pos == in_.size) {
        const void* p = nullptr;
        ssize_t n = pull_(&p);
        if (n < 0) return -1;
        if (n == 0) {
          if (!at_frame_end_) {
            error_ = Status::Corrupt(name_ + ": the zstd stream is truncated (it ends at byte " +
                                     std::to_string(in_total_) + ")");
            return -1;
          }
          done_ = true;
          break;
        }
        in_ = {p, static_cast<size_t>(n), 0};
        if (in_total_ == 0 && !CheckMagic()) return -1;
        in_total_ += static_cast<uint64_t>(n);
      }
      const size_t before = o.pos;
      size_t r = ZSTD_decompressStream(ds_, &o, &in_);
      out_total_ += o.pos - before;
      if (ZSTD_isError(r)) {
        error_ = Status::Corrupt(name_ + ": corrupt zstd data near byte " +
                                 std::to_string(in_total_ - (in_.size - in_.pos)) + " (" +
                                 ZSTD_getErrorName(r) + ")");
        return -1;
      }
      at_frame_end_ = r == 0;
      if (at_frame_end_) Checkpoint(in_total_ - (in_.size - in_.pos), 0, nullptr, 0, false);
    }
    if (done_) Finish();
    *out = buf_.data();
    return static_cast<ssize_t>(o.pos);
  }

 private:
  bool CheckMagic() {
    if (in_.size < 4) return true;
    uint32_t magic;
    std::memcpy(&magic, in_.src, 4);
    if (magic != ZSTD_MAGICNUMBER &&
        (magic & ZSTD_MAGIC_SKIPPABLE_MASK) != ZSTD_MAGIC_SKIPPABLE_START) {
      error_ = Status::Corrupt(name_ + ": not zstd-compressed, though the image says it is");
      return false;
    }
    return true;
  }

  ZSTD_DStream* ds_;
  std::vector<uint8_t> buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  uint64_t in_total_ = 0;
  bool at_frame_end_ = false;
  bool done_ = false;
};

}  // namespace

StreamScanner::StreamScanner(IndexCodec codec, uint64_t span, std::string name, Pull pull)
    : name_(std::move(name)), pull_(std::move(pull)) {
  points_.codec = codec;
  points_.span = span;
}

std::unique_ptr<StreamScanner> StreamScanner::Make(Compression c, uint64_t span, std::string name,
                                                   Pull pull) {
  span = EffectiveSpan(span);
  if (c == Compression::kGzip) {
    return std::make_unique<GzipScanner>(span, std::move(name), std::move(pull));
  }
  return std::make_unique<ZstdScanner>(span, std::move(name), std::move(pull));
}

void StreamScanner::Checkpoint(uint64_t in, uint8_t bits, const uint8_t* window, size_t window_size,
                               bool force) {
  auto& points = points_.points;
  if (!force && !points.empty() && out_total_ - points.back().out < points_.span) return;
  layerfs::Checkpoint cp;
  cp.out = out_total_;
  cp.in = in;
  cp.bits = bits;
  if (window_size > 0) {
    cp.window = CompressWindow(window, window_size);
    if (cp.window.empty()) return;  // no memory: no checkpoint here, one at the next boundary
    cp.window_raw = static_cast<uint16_t>(window_size);
  }
  if (!points.empty() && points.back().out == cp.out) {
    points.back() = std::move(cp);
  } else {
    points.push_back(std::move(cp));
  }
}

void StreamScanner::Finish() {
  auto& points = points_.points;
  while (!points.empty() && points.back().out >= out_total_ && out_total_ > 0) points.pop_back();
  if (out_total_ == 0) points.clear();
}

}  // namespace layerfs
