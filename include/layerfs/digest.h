// Content digests ("sha256:<64 hex>"), the identity of every blob layerfs reads.
#ifndef LAYERFS_DIGEST_H_
#define LAYERFS_DIGEST_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "layerfs/status.h"

namespace layerfs {

// A sha256 digest. Only sha256 is accepted: it is what the OCI image spec requires registries and
// tools to support, and what docker and podman write.
class Digest {
 public:
  static constexpr size_t kSize = 32;

  Digest() = default;
  explicit Digest(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // Parses "sha256:<64 lowercase hex>". Any other algorithm or length is an error.
  static Result<Digest> Parse(std::string_view text);
  // Parses 64 hex characters without the "sha256:" prefix (as in `<hex>.tar` file names).
  static Result<Digest> ParseHex(std::string_view hex);

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  bool empty() const;
  std::string hex() const;  // 64 lowercase hex characters
  std::string str() const { return "sha256:" + hex(); }
  std::string short_hex() const { return hex().substr(0, 12); }

  friend bool operator==(const Digest&, const Digest&) = default;

 private:
  std::array<uint8_t, kSize> bytes_{};
};

}  // namespace layerfs

#endif  // LAYERFS_DIGEST_H_
