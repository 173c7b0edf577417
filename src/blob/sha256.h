// Streaming sha256 with OpenSSL (which uses the CPU's SHA extensions).
#ifndef LAYERFS_BLOB_SHA256_H_
#define LAYERFS_BLOB_SHA256_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "layerfs/digest.h"

namespace layerfs {

class Sha256 {
 public:
  Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  ~Sha256();

  void Update(const void* data, size_t size);
  // Returns the digest of everything passed to Update; the object must not be used afterwards
  // except by Reset().
  Digest Finish();
  void Reset();

  static Digest Of(const void* data, size_t size);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// The sha256 of `length` bytes of `fd` at `offset`; `name` names the file in errors.
Result<Digest> HashRange(int fd, uint64_t offset, uint64_t length, const std::string& name);

}  // namespace layerfs

#endif  // LAYERFS_BLOB_SHA256_H_
