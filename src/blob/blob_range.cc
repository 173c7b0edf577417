#include "blob/blob_range.h"

#include <fcntl.h>

namespace layerfs {

FileIdentity FileIdentity::Of(const struct stat& st) {
  FileIdentity id;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  id.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  return id;
}

Result<BlobRange> WholeFileRange(UniqueFd file, const std::string& name) {
  int fd = file.get();
  BlobRange range;
  range.file = std::make_shared<UniqueFd>(std::move(file));
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, name);
  if (!S_ISREG(st.st_mode)) return Status::Invalid(name + ": not a regular file");
  range.length = static_cast<uint64_t>(st.st_size);
  range.name = name;
  range.identity = FileIdentity::Of(st);
  return range;
}

}  // namespace layerfs
