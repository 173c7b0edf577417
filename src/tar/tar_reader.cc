#include "tar/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <clocale>
#include <limits>
#include <memory>
#include <string>

#include "base/log.h"
#include "base/path.h"
#include "blob/sha256.h"
#include "blob/stream_scan.h"

namespace layerfs {

std::string_view CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone: return "none";
    case Compression::kGzip: return "gzip";
    case Compression::kZstd: return "zstd";
  }
  return "?";
}

void InitArchiveLocale() {
  for (const char* name : {"C.UTF-8", "C.utf8", "en_US.UTF-8"}) {
    if (std::setlocale(LC_ALL, name) != nullptr) return;
  }
  LogWarning("no UTF-8 locale is available; names that are not ASCII may be misread");
}

namespace {

constexpr size_t kReadBlock = 1 << 20;

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

// The blob as stored: read front to back in large blocks, every byte hashed once.
struct FileSource {
  int fd;
  uint64_t pos;
  uint64_t end;
  Sha256* hash;
  std::string_view name;
  const std::function<void(uint64_t)>* progress = nullptr;
  std::unique_ptr<char[]> buf{new char[kReadBlock]};
  uint64_t consumed = 0;
  Status error;

  // Returns the next block (0 bytes at the end of the range) or -1 with `error` set.
  ssize_t Next(const void** out) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kReadBlock, end - pos));
    if (want == 0) return 0;
    ssize_t n;
    do {
      n = ::pread(fd, buf.get(), want, static_cast<off_t>(pos));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      error = Status::FromErrno(errno, "read " + std::string(name));
      return -1;
    }
    if (n == 0) {
      error = Status::Corrupt(std::string(name) + ": blob is shorter than the image says (" +
                              std::to_string(consumed) + " of " +
                              std::to_string(end - pos + consumed) + " bytes)");
      return -1;
    }
    pos += static_cast<uint64_t>(n);
    consumed += static_cast<uint64_t>(n);
    if (hash != nullptr) hash->Update(buf.get(), static_cast<size_t>(n));
    if (progress != nullptr && *progress) (*progress)(consumed);
    *out = buf.get();
    return n;
  }
};

// The uncompressed tar: the file itself, or the output of the decompressing `scanner`.
struct TarStream {
  FileSource* file;
  StreamScanner* scanner = nullptr;
  Sha256* hash = nullptr;  // the tar hash when it differs from the blob hash
  int copy_fd = -1;
  uint64_t bytes = 0;
  std::string_view name;
  Status error;

  ssize_t Next(const void** out) {
    ssize_t n = scanner == nullptr ? file->Next(out) : scanner->Next(out);
    if (n < 0) {
      error = !file->error.ok() ? file->error : scanner->error();
      return -1;
    }
    if (scanner != nullptr && copy_fd >= 0 && !WriteAll(*out, static_cast<size_t>(n))) return -1;
    if (hash != nullptr) hash->Update(*out, static_cast<size_t>(n));
    bytes += static_cast<uint64_t>(n);
    return n;
  }

  bool WriteAll(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t w = ::write(copy_fd, p, size);
      if (w < 0) {
        if (errno == EINTR) continue;
        error = Status::FromErrno(errno, "write the uncompressed copy of " + std::string(name));
        return false;
      }
      p += w;
      size -= static_cast<size_t>(w);
    }
    return true;
  }
};

la_ssize_t TarRead(archive*, void* client, const void** buf) {
  return static_cast<TarStream*>(client)->Next(buf);
}

std::string ArchiveError(archive* a) {
  const char* s = archive_error_string(a);
  return s != nullptr ? s : "unknown error";
}

Result<TarEntryType> EntryTypeOf(archive_entry* e) {
  if (archive_entry_hardlink(e) != nullptr) return TarEntryType::kHardlink;
  switch (archive_entry_filetype(e)) {
    case AE_IFREG: return TarEntryType::kRegular;
    case AE_IFDIR: return TarEntryType::kDirectory;
    case AE_IFLNK: return TarEntryType::kSymlink;
    case AE_IFCHR: return TarEntryType::kCharDevice;
    case AE_IFBLK: return TarEntryType::kBlockDevice;
    case AE_IFIFO: return TarEntryType::kFifo;
    case AE_IFSOCK: return TarEntryType::kSocket;
    default: return Status::Unsupported("unknown entry type");
  }
}

// Fills `out` from a header just read; `data_offset` is where the entry's data starts.
Status DecodeEntry(archive_entry* e, uint64_t data_offset, TarEntry* out) {
  const char* path = archive_entry_pathname(e);
  if (path == nullptr) path = archive_entry_pathname_utf8(e);
  if (path == nullptr) return Status::Corrupt("entry has no name");
  out->path = path;
  LAYERFS_ASSIGN_OR_RETURN(out->type, EntryTypeOf(e));
  out->mode = static_cast<uint32_t>(archive_entry_perm(e)) & 07777;
  la_int64_t uid = archive_entry_uid(e);
  la_int64_t gid = archive_entry_gid(e);
  constexpr la_int64_t kMaxId = std::numeric_limits<uint32_t>::max();
  if (uid < 0 || uid > kMaxId || gid < 0 || gid > kMaxId) {
    return Status::Corrupt("owner " + std::to_string(uid) + ":" + std::to_string(gid) +
                           " is out of range");
  }
  out->uid = static_cast<uint32_t>(uid);
  out->gid = static_cast<uint32_t>(gid);
  out->mtime_sec = archive_entry_mtime_is_set(e) ? archive_entry_mtime(e) : 0;
  long nsec = archive_entry_mtime_is_set(e) ? archive_entry_mtime_nsec(e) : 0;
  out->mtime_nsec = (nsec >= 0 && nsec < 1000000000) ? static_cast<uint32_t>(nsec) : 0;
  la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (size < 0) return Status::Corrupt("negative size");
  out->size = out->type == TarEntryType::kRegular ? static_cast<uint64_t>(size) : 0;
  out->data_offset = data_offset;
  out->link_target = {};
  if (out->type == TarEntryType::kHardlink) {
    out->link_target = archive_entry_hardlink(e);
  } else if (out->type == TarEntryType::kSymlink) {
    const char* target = archive_entry_symlink(e);
    if (target == nullptr) target = archive_entry_symlink_utf8(e);
    if (target == nullptr) return Status::Corrupt("symlink has no target");
    out->link_target = target;
  }
  out->rdev_major = static_cast<uint32_t>(archive_entry_rdevmajor(e));
  out->rdev_minor = static_cast<uint32_t>(archive_entry_rdevminor(e));

  out->xattrs.clear();
  if (archive_entry_xattr_reset(e) > 0) {
    // libarchive writes each xattr twice (LIBARCHIVE.xattr.* and SCHILY.xattr.*) and reports
    // both when reading: keep one per name.
    const char* name;
    const void* value;
    size_t value_size;
    while (archive_entry_xattr_next(e, &name, &value, &value_size) == ARCHIVE_OK) {
      // A PAX record with an empty value deletes the key (POSIX pax); it sets no xattr. This is
      // also what Go's archive/tar, hence umoci, containerd and docker, apply.
      if (value_size == 0) continue;
      bool seen = false;
      for (const auto& [n, v] : out->xattrs) seen = seen || n == name;
      if (seen) continue;
      out->xattrs.emplace_back(name, std::string_view(static_cast<const char*>(value),
                                                      value_size));
    }
  }

  out->sparse.clear();
  out->is_sparse = false;
  if (out->type == TarEntryType::kRegular && archive_entry_sparse_reset(e) > 0) {
    out->is_sparse = true;
    la_int64_t offset, length;
    uint64_t physical = data_offset;
    while (archive_entry_sparse_next(e, &offset, &length) == ARCHIVE_OK) {
      if (offset < 0 || length < 0) return Status::Corrupt("negative offset in sparse map");
      if (length == 0) continue;
      out->sparse.push_back({static_cast<uint64_t>(offset), static_cast<uint64_t>(length),
                             physical});
      physical += static_cast<uint64_t>(length);
    }
    // A map with one run over the whole file is an ordinary file.
    if (out->sparse.size() == 1 && out->sparse[0].logical == 0 &&
        out->sparse[0].length == out->size) {
      out->sparse.clear();
      out->is_sparse = false;
    }
  }
  return Status::Ok();
}

// Whether the bytes an entry is served from lie within the data the tar stores for it: `extent`
// bytes from its data offset (padding included). libarchive reports a sparse file whose map it
// could not use as an ordinary file of the map's real size, and a map's runs are taken on trust;
// either would make reads run into the headers and data of the entries that follow.
Status CheckDataExtent(const TarEntry& e, uint64_t extent) {
  if (e.type != TarEntryType::kRegular) return Status::Ok();
  uint64_t total = 0;
  if (e.is_sparse) {
    for (const SparseRun& run : e.sparse) {
      constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
      total = run.length > kMax - total ? kMax : total + run.length;
    }
  } else {
    total = e.size;
  }
  if (total <= extent) return Status::Ok();
  return Status::Corrupt(std::string(e.is_sparse ? "sparse map" : "size") + " needs " +
                         std::to_string(total) + " bytes of data, the tar stores " +
                         std::to_string(extent) + " for the entry");
}

}  // namespace

Result<TarReadStats> ReadTar(int fd, uint64_t offset, uint64_t length, std::string_view name,
                             const TarReadOptions& options, const TarVisitor& visit) {
  ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length),
                  POSIX_FADV_SEQUENTIAL);
  FileSource file{fd, offset, offset + length, options.blob_hash, name, &options.progress};
  TarStream stream{&file};
  stream.name = name;
  stream.copy_fd = options.copy_fd;
  if (options.tar_hash != options.blob_hash) stream.hash = options.tar_hash;

  std::unique_ptr<StreamScanner> scanner;
  if (options.compression != Compression::kNone) {
    scanner = StreamScanner::Make(options.compression, options.span, std::string(name),
                                  [&file](const void** block) { return file.Next(block); });
    stream.scanner = scanner.get();
  }

  ArchivePtr tar(archive_read_new());
  if (!tar) return Status::Error(ENOMEM, "archive_read_new");
  archive_read_support_format_tar(tar.get());
  archive_read_support_format_empty(tar.get());
  auto stream_error = [&](const std::string& what) -> Status {
    if (!stream.error.ok()) return stream.error;
    std::string why = ArchiveError(tar.get());
    // libarchive refuses a PAX or GNU long-name header over 1 MiB before reading it.
    if (why == "Special header too large") {
      why += " (a PAX or GNU long-name header larger than 1 MiB)";
    }
    return Status::Corrupt(std::string(name) + ": " + what + why);
  };
  if (archive_read_open(tar.get(), &stream, nullptr, TarRead, nullptr) != ARCHIVE_OK) {
    return stream_error("not a tar archive: ");
  }

  TarReadStats stats;
  TarEntry entry;
  std::string last_path;  // for errors about what follows it
  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(tar.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      std::string where =
          stats.entries == 0
              ? std::string("at the first header: ")
              : "after entry " + std::to_string(stats.entries - 1) + " \"" + Printable(last_path) +
                    "\" (at byte " + std::to_string(archive_filter_bytes(tar.get(), 0)) + "): ";
      return stream_error("corrupt or truncated tar " + where);
    }
    uint64_t data_offset = static_cast<uint64_t>(archive_filter_bytes(tar.get(), 0));
    entry.index = stats.entries++;
    Status s = DecodeEntry(e, data_offset, &entry);
    auto entry_context = [&] {
      const char* p = archive_entry_pathname(e);
      return std::string(name) + ": entry " + std::to_string(entry.index) + " \"" +
             Printable(p != nullptr ? p : "") + "\"";
    };
    if (!s.ok()) return s.WithContext(entry_context());
    // Step over the entry's data now (the next header would), to learn where it ends.
    r = archive_read_data_skip(tar.get());
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return stream_error("corrupt or truncated tar in the data of entry " +
                          std::to_string(entry.index) + " \"" + Printable(entry.path) + "\": ");
    }
    const uint64_t data_end = static_cast<uint64_t>(archive_filter_bytes(tar.get(), 0));
    s = CheckDataExtent(entry, data_end >= data_offset ? data_end - data_offset : 0);
    if (!s.ok()) return s.WithContext(entry_context());
    last_path = entry.path;
    LAYERFS_RETURN_IF_ERROR(visit(entry));
  }
  if (archive_read_has_encrypted_entries(tar.get()) > 0) {
    return Status::Unsupported(std::string(name) + ": encrypted entries");
  }

  // Drain what libarchive did not need (the zero blocks after the end-of-archive marker, padding),
  // so that the digests cover the whole blob.
  const void* p;
  ssize_t n;
  while ((n = stream.Next(&p)) > 0) {
  }
  if (n < 0) return stream.error;
  if (scanner != nullptr) {
    while ((n = file.Next(&p)) > 0) {
    }
    if (n < 0) return file.error;
    if (file.consumed != length) {
      return Status::Corrupt(std::string(name) + ": " + std::to_string(length - file.consumed) +
                             " bytes after the end of the compressed stream");
    }
    if (options.checkpoints != nullptr) *options.checkpoints = scanner->checkpoints();
  }
  stats.blob_bytes = file.consumed;
  stats.tar_bytes = stream.bytes;
  return stats;
}

}  // namespace layerfs
