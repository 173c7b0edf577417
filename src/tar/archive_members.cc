#include "tar/archive_members.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "base/path.h"

namespace layerfs {
namespace {

struct Reader {
  int fd;
  uint64_t pos = 0;
  uint64_t size = 0;
  char buf[64 * 1024];
  int error = 0;
};

la_ssize_t Read(archive*, void* client, const void** out) {
  auto* r = static_cast<Reader*>(client);
  ssize_t n;
  do {
    n = ::pread(r->fd, r->buf, sizeof(r->buf), static_cast<off_t>(r->pos));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    r->error = errno;
    return -1;
  }
  r->pos += static_cast<uint64_t>(n);
  *out = r->buf;
  return n;
}

la_int64_t Skip(archive*, void* client, la_int64_t request) {
  auto* r = static_cast<Reader*>(client);
  if (request <= 0) return 0;
  uint64_t left = r->pos < r->size ? r->size - r->pos : 0;
  uint64_t step = std::min<uint64_t>(static_cast<uint64_t>(request), left);
  r->pos += step;
  return static_cast<la_int64_t>(step);
}

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

// The compression of a whole archive, from its magic bytes, or nullptr for none known.
const char* CompressionOf(int fd) {
  unsigned char m[6] = {};
  if (::pread(fd, m, sizeof(m), 0) < 4) return nullptr;
  if (m[0] == 0x1f && m[1] == 0x8b) return "gzip";
  if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) return "zstd";
  if (m[0] == 'B' && m[1] == 'Z' && m[2] == 'h') return "bzip2";
  if (m[0] == 0xfd && m[1] == '7' && m[2] == 'z' && m[3] == 'X' && m[4] == 'Z' && m[5] == 0) {
    return "xz";
  }
  if (m[0] == 0x04 && m[1] == 0x22 && m[2] == 0x4d && m[3] == 0x18) return "lz4";
  return nullptr;
}

}  // namespace

Result<std::vector<ArchiveMember>> ListArchiveMembers(int fd, const std::string& name) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, name);
  auto reader = std::make_unique<Reader>();
  reader->fd = fd;
  reader->size = static_cast<uint64_t>(st.st_size);

  // A compressed archive cannot be read in place: its members' bytes are not in the file.
  if (const char* compression = CompressionOf(fd)) {
    return Status::Unsupported(name + ": a compressed archive (" + compression +
                               ") cannot be read in place; decompress it first");
  }
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  if (!a) return Status::Error(ENOMEM, "archive_read_new");
  archive_read_support_format_tar(a.get());
  archive_read_set_read_callback(a.get(), Read);
  archive_read_set_skip_callback(a.get(), Skip);
  archive_read_set_callback_data(a.get(), reader.get());
  if (archive_read_open1(a.get()) != ARCHIVE_OK) {
    if (reader->error != 0) return Status::FromErrno(reader->error, name);
    const char* e = archive_error_string(a.get());
    return Status::Invalid(name + ": not an image archive (" + (e ? e : "unknown format") + ")");
  }

  std::vector<ArchiveMember> members;
  for (;;) {
    archive_entry* e;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      if (reader->error != 0) return Status::FromErrno(reader->error, name);
      const char* err = archive_error_string(a.get());
      return Status::Corrupt(name + ": corrupt archive after " + std::to_string(members.size()) +
                             " members: " + (err ? err : "unknown error"));
    }
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) continue;
    auto path = NormalizePath(raw);
    if (!path.ok()) continue;  // a member outside the archive root is never looked up
    ArchiveMember m;
    m.path = *path;
    m.offset = static_cast<uint64_t>(archive_filter_bytes(a.get(), 0));
    m.size = 0;
    const char* hardlink = archive_entry_hardlink(e);
    if (hardlink != nullptr) {
      auto target = NormalizePath(hardlink);
      if (!target.ok()) continue;
      m.kind = ArchiveMember::Kind::kHardlink;
      m.link = *target;
    } else {
      switch (archive_entry_filetype(e)) {
        case AE_IFREG:
          m.kind = ArchiveMember::Kind::kFile;
          m.size = static_cast<uint64_t>(archive_entry_size(e));
          if (archive_entry_sparse_count(e) > 0) m.kind = ArchiveMember::Kind::kOther;
          break;
        case AE_IFDIR:
          m.kind = ArchiveMember::Kind::kDirectory;
          break;
        case AE_IFLNK:
          m.kind = ArchiveMember::Kind::kSymlink;
          m.link = archive_entry_symlink(e) ? archive_entry_symlink(e) : "";
          break;
        default:
          m.kind = ArchiveMember::Kind::kOther;
          break;
      }
    }
    if (m.kind == ArchiveMember::Kind::kFile &&
        (m.offset > reader->size || m.size > reader->size - m.offset)) {
      return Status::Corrupt(name + ": member \"" + Printable(m.path) +
                             "\" runs past the end of the archive (truncated?)");
    }
    members.push_back(std::move(m));
  }
  return members;
}

}  // namespace layerfs
