#include "blob/sha256.h"

// The one-shot SHA256_* functions are deprecated in OpenSSL 3 in favour of EVP, but EVP's first
// use initialises the provider machinery and reads openssl.cnf: about 2.5 ms, more than a whole
// warm mount's indexing work. The low-level functions run the same SHA-NI code with no set-up.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <fcntl.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace layerfs {

struct Sha256::Ctx {
  SHA256_CTX sha;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) { Reset(); }

Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;
Sha256::~Sha256() = default;

void Sha256::Reset() { SHA256_Init(&ctx_->sha); }

void Sha256::Update(const void* data, size_t size) {
  if (size > 0) SHA256_Update(&ctx_->sha, data, size);
}

Digest Sha256::Finish() {
  std::array<uint8_t, Digest::kSize> out{};
  SHA256_Final(out.data(), &ctx_->sha);
  return Digest(out);
}

Digest Sha256::Of(const void* data, size_t size) {
  Sha256 h;
  h.Update(data, size);
  return h.Finish();
}

Result<Digest> HashRange(int fd, uint64_t offset, uint64_t length, const std::string& name) {
  constexpr size_t kBlock = 1 << 20;
  std::unique_ptr<char[]> buf(new char[kBlock]);
  ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length),
                  POSIX_FADV_SEQUENTIAL);
  Sha256 h;
  while (length > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kBlock, length));
    ssize_t n = ::pread(fd, buf.get(), want, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read " + name);
    }
    if (n == 0) return Status::Corrupt(name + ": shorter than the image says");
    h.Update(buf.get(), static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
    length -= static_cast<uint64_t>(n);
  }
  return h.Finish();
}

}  // namespace layerfs
