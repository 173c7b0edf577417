// ByteSource: the uncompressed bytes of a layer's tar, wherever they are kept.
//
// Every reader of a layer's bytes (FUSE reads, copy-up, commit, inspect) goes through this
// interface, by way of index/layer_data.h; none of them knows whether the bytes are a range of a
// local file, a compressed stream or a remote blob. A source is immutable once made and may be
// read from many threads at once.
//
// A source whose bytes lie in a file says so through FileAt(), so that reads can hand the file to
// the kernel (splice, copy_file_range) instead of copying the bytes through memory.
#ifndef LAYERFS_BLOB_BYTE_SOURCE_H_
#define LAYERFS_BLOB_BYTE_SOURCE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "blob/blob_range.h"
#include "layerfs/status.h"

namespace layerfs {

// Where bytes of a source lie in an open file: `fd` at `pos`, for `length` bytes.
struct FileSpan {
  int fd = -1;
  uint64_t pos = 0;
  uint64_t length = 0;
};

class ByteSource {
 public:
  virtual ~ByteSource() = default;

  // The length of the uncompressed bytes.
  virtual uint64_t size() const = 0;
  // For messages: the blob or file the bytes come from.
  virtual const std::string& name() const = 0;

  // Reads exactly `size` bytes at `offset` into `buf`. REQUIRES: offset + size <= size(). A
  // source that ends early (a file truncated since it was verified) is an error, never a short
  // read.
  virtual Status ReadAt(uint64_t offset, char* buf, size_t size) const = 0;

  // A hint that the bytes [offset, offset + length) are about to be read (clipped to the
  // source). A source that must fetch bytes fetches those it lacks of the range in as few
  // requests as it can; an error is one the reads would meet. Other sources do nothing.
  virtual Status WillRead(uint64_t offset, uint64_t length) const {
    (void)offset;
    (void)length;
    return Status::Ok();
  }

  // The file holding the bytes from `offset` on, and how many of them it holds contiguously; an
  // empty span (fd -1) when they are not a file's.
  virtual FileSpan FileAt(uint64_t offset) const {
    (void)offset;
    return {};
  }

  // Whether the bytes may still be those that were verified. A source found changed stays failed
  // and logs that once; its reads should then fail with EIO, as a disk with a bad sector would,
  // rather than serve bytes that may not be the verified ones.
  virtual bool Intact() const { return true; }
};

// The bytes of a range of an open file: an uncompressed blob, a layer inside a docker-save
// archive, or a cached uncompressed copy. Intact() compares the file's size, mtime and ctime with
// those it had when the source was made (a rewrite that restores the mtime still changes the
// ctime).
class FileSource final : public ByteSource {
 public:
  // The identity compared by Intact() is the file's at this call.
  static Result<std::shared_ptr<FileSource>> Open(std::shared_ptr<UniqueFd> file, uint64_t offset,
                                                  uint64_t length, std::string name);
  // The identity compared is the one `range` recorded when it was opened.
  static Result<std::shared_ptr<FileSource>> Of(const BlobRange& range);

  uint64_t size() const override { return length_; }
  const std::string& name() const override { return name_; }
  Status ReadAt(uint64_t offset, char* buf, size_t size) const override;
  FileSpan FileAt(uint64_t offset) const override;
  bool Intact() const override;

  int fd() const { return file_->get(); }
  uint64_t offset() const { return offset_; }

  FileSource(std::shared_ptr<UniqueFd> file, uint64_t offset, uint64_t length, std::string name,
             const FileIdentity& identity)
      : file_(std::move(file)),
        offset_(offset),
        length_(length),
        name_(std::move(name)),
        identity_(identity) {}

 private:
  std::shared_ptr<UniqueFd> file_;
  uint64_t offset_;
  uint64_t length_;
  std::string name_;
  FileIdentity identity_;
  mutable std::atomic<bool> failed_{false};
};

// Writes `length` bytes of `source` at `offset` into `out` at `out_offset`: by copy_file_range
// where the source is a file, through memory otherwise.
Status CopySource(const ByteSource& source, uint64_t offset, uint64_t length, int out,
                  uint64_t out_offset);

}  // namespace layerfs

#endif  // LAYERFS_BLOB_BYTE_SOURCE_H_
