// The tar is written here rather than with libarchive: libarchive's writer pulls every archive
// format it knows (and their compression and XML libraries) into a statically linked binary. The
// format written is plain POSIX pax (ustar headers, with an extended header where a value does not
// fit), which every tar reader, libarchive included, reads; the tests read it back with libarchive.
#include "tar/layer_writer.h"

#include <sys/sysmacros.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <string>
#include <vector>

#include "blob/sha256.h"

namespace layerfs {
namespace {

constexpr size_t kBlock = 512;

// Writes `value` as `width - 1` octal digits and a NUL; false if it does not fit.
bool Octal(char* field, size_t width, uint64_t value) {
  const uint64_t limit = width - 1 >= 22 ? ~uint64_t{0} : (uint64_t{1} << (3 * (width - 1))) - 1;
  if (value > limit) return false;
  field[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  return true;
}

// One pax record, "LEN key=value\n", where LEN counts the whole record including itself.
void AddRecord(std::string* out, std::string_view key, std::string_view value) {
  const size_t rest = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
  size_t len = rest + 1;
  while (std::to_string(len).size() + rest != len) len = std::to_string(len).size() + rest;
  *out += std::to_string(len);
  *out += ' ';
  *out += key;
  *out += '=';
  *out += value;
  *out += '\n';
}

char TypeFlag(const TarItem& item) {
  if (item.hardlink) return '1';
  switch (item.mode & S_IFMT) {
    case S_IFLNK: return '2';
    case S_IFCHR: return '3';
    case S_IFBLK: return '4';
    case S_IFDIR: return '5';
    case S_IFIFO: return '6';
    default: return '0';
  }
}

}  // namespace

// Tar bytes are hashed (diff_id), compressed when asked, hashed again (blob digest) and written.
struct LayerWriter::State {
  int fd = -1;
  Compression compression = Compression::kNone;
  Sha256 diff_hash;
  Sha256 blob_hash;
  uint64_t blob_size = 0;
  uint64_t data_left = 0;  // content still owed for the current regular file
  uint64_t data_pad = 0;   // zeros after it, to the block boundary
  z_stream gz = {};
  bool gz_ready = false;
  ZSTD_CStream* zs = nullptr;
  std::vector<char> out_buf = std::vector<char>(1 << 17);

  ~State() {
    if (gz_ready) deflateEnd(&gz);
    if (zs != nullptr) ZSTD_freeCStream(zs);
  }

  Status WriteOut(const char* p, size_t size) {
    blob_hash.Update(p, size);
    blob_size += size;
    while (size > 0) {
      ssize_t n = ::write(fd, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno(errno, "writing the layer");
      p += n;
      size -= static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  // Feeds tar bytes through; `finish` flushes the compressor at the end.
  Status Put(const void* data, size_t size, bool finish = false) {
    diff_hash.Update(data, size);
    switch (compression) {
      case Compression::kNone:
        return WriteOut(static_cast<const char*>(data), size);
      case Compression::kGzip: {
        gz.next_in = static_cast<Bytef*>(const_cast<void*>(data));
        gz.avail_in = static_cast<uInt>(size);
        for (;;) {
          gz.next_out = reinterpret_cast<Bytef*>(out_buf.data());
          gz.avail_out = static_cast<uInt>(out_buf.size());
          int rc = deflate(&gz, finish ? Z_FINISH : Z_NO_FLUSH);
          if (rc == Z_STREAM_ERROR) return Status::Error(EIO, "gzip compression failed");
          size_t have = out_buf.size() - gz.avail_out;
          if (have > 0) {
            if (Status s = WriteOut(out_buf.data(), have); !s.ok()) return s;
          }
          if (finish ? rc == Z_STREAM_END : gz.avail_in == 0 && gz.avail_out != 0) break;
        }
        return Status::Ok();
      }
      case Compression::kZstd: {
        ZSTD_inBuffer in = {data, size, 0};
        for (;;) {
          ZSTD_outBuffer out = {out_buf.data(), out_buf.size(), 0};
          size_t rc = ZSTD_compressStream2(zs, &out, &in, finish ? ZSTD_e_end : ZSTD_e_continue);
          if (ZSTD_isError(rc)) {
            return Status::Error(EIO, std::string("zstd compression failed: ") +
                                          ZSTD_getErrorName(rc));
          }
          if (out.pos > 0) {
            if (Status s = WriteOut(out_buf.data(), out.pos); !s.ok()) return s;
          }
          if (finish ? rc == 0 : in.pos == in.size && out.pos < out.size) break;
        }
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  Status Zeros(size_t n) {
    static const char zeros[kBlock] = {};
    while (n > 0) {
      size_t k = std::min(n, kBlock);
      if (Status s = Put(zeros, k); !s.ok()) return s;
      n -= k;
    }
    return Status::Ok();
  }

  Status Header(std::string_view name, char type, const TarItem& item, uint64_t size,
                std::string_view link, bool with_ids) {
    char h[kBlock] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    Octal(h + 100, 8, item.mode & 07777);
    if (with_ids) {
      Octal(h + 108, 8, item.uid);
      Octal(h + 116, 8, item.gid);
    } else {
      Octal(h + 108, 8, 0);
      Octal(h + 116, 8, 0);
    }
    Octal(h + 124, 12, size);
    Octal(h + 136, 12, item.mtime.tv_sec > 0 ? static_cast<uint64_t>(item.mtime.tv_sec) : 0);
    h[156] = type;
    std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    if (type == '3' || type == '4') {
      Octal(h + 329, 8, major(item.rdev));
      Octal(h + 337, 8, minor(item.rdev));
    }
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    Octal(h + 148, 7, sum);
    h[155] = ' ';
    return Put(h, sizeof(h));
  }
};

LayerWriter::~LayerWriter() = default;

Result<std::unique_ptr<LayerWriter>> LayerWriter::Create(int fd, Compression compression) {
  std::unique_ptr<LayerWriter> w(new LayerWriter());
  w->state_ = std::make_unique<State>();
  State& s = *w->state_;
  s.fd = fd;
  s.compression = compression;
  if (compression == Compression::kGzip) {
    // windowBits 15 + 16: a gzip stream rather than raw zlib.
    if (deflateInit2(&s.gz, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
      return Status::Error(EIO, "cannot set up gzip compression");
    }
    s.gz_ready = true;
  } else if (compression == Compression::kZstd) {
    s.zs = ZSTD_createCStream();
    if (s.zs == nullptr) throw std::bad_alloc();
    ZSTD_CCtx_setParameter(s.zs, ZSTD_c_compressionLevel, 3);
  }
  return w;
}

Status LayerWriter::Add(const TarItem& item) {
  State& s = *state_;
  if (s.data_left != 0) return Status::Invalid(item.path + ": the previous file's content is short");
  if (s.data_pad != 0) {
    if (Status st = s.Zeros(s.data_pad); !st.ok()) return st;
    s.data_pad = 0;
  }
  const char type = TypeFlag(item);
  std::string name = item.path;
  if (type == '5' && (name.empty() || name.back() != '/')) name += '/';
  const uint64_t size = type == '0' ? item.size : 0;

  std::string pax;
  if (name.size() > 100) AddRecord(&pax, "path", name);
  std::string_view link = (type == '1' || type == '2') ? std::string_view(item.link) : "";
  if (link.size() > 100) AddRecord(&pax, "linkpath", link);
  if (size > 077777777777ull) AddRecord(&pax, "size", std::to_string(size));
  if (item.uid > 07777777) AddRecord(&pax, "uid", std::to_string(item.uid));
  if (item.gid > 07777777) AddRecord(&pax, "gid", std::to_string(item.gid));
  if (item.mtime.tv_nsec != 0 || item.mtime.tv_sec < 0 ||
      static_cast<uint64_t>(item.mtime.tv_sec) > 077777777777ull) {
    // Seconds and nanoseconds, exactly: 9 fraction digits.
    int64_t sec = item.mtime.tv_sec;
    long nsec = item.mtime.tv_nsec;
    std::string text;
    if (sec < 0 && nsec != 0) {
      // -1.5 s is sec -2 + 0.5 s: the pax value is written as a negative decimal.
      text = "-" + std::to_string(-(sec + 1)) + "." + fmt::format("{:09d}", 1000000000L - nsec);
    } else {
      text = std::to_string(sec) + "." + fmt::format("{:09d}", nsec);
    }
    AddRecord(&pax, "mtime", text);
  }
  for (const auto& [key, value] : item.xattrs) AddRecord(&pax, "SCHILY.xattr." + key, value);
  if (!pax.empty()) {
    std::string base = name;
    while (!base.empty() && base.back() == '/') base.pop_back();
    base = base.substr(base.rfind('/') == std::string::npos ? 0 : base.rfind('/') + 1);
    std::string pax_name = ("PaxHeaders/" + base).substr(0, 100);
    TarItem pax_item;
    pax_item.mode = 0644;
    pax_item.mtime = item.mtime;
    if (Status st = s.Header(pax_name, 'x', pax_item, pax.size(), "", false); !st.ok()) return st;
    if (Status st = s.Put(pax.data(), pax.size()); !st.ok()) return st;
    if (Status st = s.Zeros((kBlock - pax.size() % kBlock) % kBlock); !st.ok()) return st;
  }
  if (Status st = s.Header(name, type, item, size > 077777777777ull ? 0 : size, link, true);
      !st.ok()) {
    return st;
  }
  s.data_left = size;
  s.data_pad = (kBlock - size % kBlock) % kBlock;
  return Status::Ok();
}

Status LayerWriter::WriteData(const void* data, size_t size) {
  State& s = *state_;
  if (size > s.data_left) return Status::Invalid("more content than the file's size");
  s.data_left -= size;
  return s.Put(data, size);
}

Result<WrittenLayer> LayerWriter::Finish() {
  State& s = *state_;
  if (s.data_left != 0) return Status::Invalid("the last file's content is short");
  if (Status st = s.Zeros(s.data_pad + 2 * kBlock); !st.ok()) return st;
  s.data_pad = 0;
  if (s.compression != Compression::kNone) {
    if (Status st = s.Put(nullptr, 0, /*finish=*/true); !st.ok()) return st;
  }
  WrittenLayer out;
  out.diff_id = s.diff_hash.Finish();
  out.blob_digest = s.blob_hash.Finish();
  out.blob_size = s.blob_size;
  return out;
}

}  // namespace layerfs
