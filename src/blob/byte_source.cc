#include "blob/byte_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"

namespace layerfs {

Result<std::shared_ptr<FileSource>> FileSource::Open(std::shared_ptr<UniqueFd> file,
                                                     uint64_t offset, uint64_t length,
                                                     std::string name) {
  struct stat st;
  if (::fstat(file->get(), &st) != 0) return Status::FromErrno(errno, name);
  return std::make_shared<FileSource>(std::move(file), offset, length, std::move(name),
                                      FileIdentity::Of(st));
}

Result<std::shared_ptr<FileSource>> FileSource::Of(const BlobRange& range) {
  // The identity the blob had when it was opened, before it was verified: a change since then
  // fails the source as one after the mount would.
  if (range.identity.ino == 0) return Open(range.file, range.offset, range.length, range.name);
  return std::make_shared<FileSource>(range.file, range.offset, range.length, range.name,
                                      range.identity);
}

Status FileSource::ReadAt(uint64_t offset, char* buf, size_t size) const {
  if (offset > length_ || size > length_ - offset) {
    return Status::Invalid(name_ + ": read past the end of the layer");
  }
  size_t done = 0;
  while (done < size) {
    ssize_t n =
        ::pread(file_->get(), buf + done, size - done, static_cast<off_t>(offset_ + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "read " + name_);
    if (n == 0) return Status::Corrupt(name_ + ": blob is shorter than its index");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

FileSpan FileSource::FileAt(uint64_t offset) const {
  if (offset > length_) return {};
  return {file_->get(), offset_ + offset, length_ - offset};
}

bool FileSource::Intact() const {
  if (failed_.load(std::memory_order_relaxed)) return false;
  struct stat st;
  if (::fstat(file_->get(), &st) == 0) {
    FileIdentity now = FileIdentity::Of(st);
    if (now.size == identity_.size && now.mtime_ns == identity_.mtime_ns &&
        now.ctime_ns == identity_.ctime_ns) {
      return true;
    }
  }
  if (!failed_.exchange(true)) {
    LogError("{}: changed while mounted; the files of its layer fail with EIO until remounted",
             name_);
  }
  return false;
}

Status CopySource(const ByteSource& source, uint64_t offset, uint64_t length, int out,
                  uint64_t out_offset) {
  std::vector<char> buf;
  while (length > 0) {
    FileSpan span = source.FileAt(offset);
    uint64_t n;
    if (span.fd >= 0 && span.length > 0) {
      n = std::min(length, span.length);
      if (int err = CopyBytes(span.fd, span.pos, out, out_offset, n)) {
        return Status::FromErrno(err, "copy from " + source.name());
      }
    } else {
      if (buf.empty()) buf.resize(1u << 20);
      n = std::min<uint64_t>(length, buf.size());
      LAYERFS_RETURN_IF_ERROR(source.ReadAt(offset, buf.data(), static_cast<size_t>(n)));
      if (int err = PwriteFully(out, buf.data(), static_cast<size_t>(n), out_offset)) {
        return Status::FromErrno(err, "write");
      }
    }
    offset += n;
    out_offset += n;
    length -= n;
  }
  return Status::Ok();
}

}  // namespace layerfs
