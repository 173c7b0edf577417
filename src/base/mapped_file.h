// MappedFile: a read-only, shared memory mapping of a whole file, unmapped when destroyed.
#ifndef LAYERFS_BASE_MAPPED_FILE_H_
#define LAYERFS_BASE_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "layerfs/status.h"

namespace layerfs {

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  // Maps all of `fd` (which the caller keeps or closes; the mapping stays valid either way).
  // `name` only names the file in errors.
  static Result<MappedFile> Map(int fd, const std::string& name);

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace layerfs

#endif  // LAYERFS_BASE_MAPPED_FILE_H_
