#include "layerfs/digest.h"

#include <algorithm>

namespace layerfs {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 80)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (text.size() > 80) out += "...";
  return out;
}

}  // namespace

Result<Digest> Digest::ParseHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return Status::Invalid("digest \"" + Printable(hex) + "\": a sha256 digest has 64 hex digits");
  }
  std::array<uint8_t, kSize> bytes{};
  for (size_t i = 0; i < kSize; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::Invalid("digest \"" + Printable(hex) + "\": not lowercase hex");
    }
    bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return Digest(bytes);
}

Result<Digest> Digest::Parse(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    size_t colon = text.find(':');
    if (colon != std::string_view::npos && colon > 0) {
      return Status::Unsupported("digest \"" + Printable(text) + "\": algorithm \"" +
                                 Printable(text.substr(0, colon)) +
                                 "\" is not supported (only sha256)");
    }
    return Status::Invalid("digest \"" + Printable(text) + "\": expected sha256:<64 hex digits>");
  }
  return ParseHex(text.substr(kPrefix.size()));
}

bool Digest::empty() const {
  return std::all_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b == 0; });
}

std::string Digest::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * kSize, '0');
  for (size_t i = 0; i < kSize; ++i) {
    out[2 * i] = kDigits[bytes_[i] >> 4];
    out[2 * i + 1] = kDigits[bytes_[i] & 0xf];
  }
  return out;
}

}  // namespace layerfs
