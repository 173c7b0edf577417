#include "layerfs/digest.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

namespace layerfs {
namespace {

// sha256 of the empty string.
constexpr std::string_view kEmptyHex =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST_CASE("Digest::Parse reads sha256:<hex> and prints it back the same", "[base]") {
  auto d = Digest::Parse("sha256:" + std::string(kEmptyHex));
  REQUIRE(d.ok());
  CHECK(d->hex() == kEmptyHex);
  CHECK(d->str() == "sha256:" + std::string(kEmptyHex));
  CHECK(d->short_hex() == "e3b0c44298fc");
  CHECK(d->bytes()[0] == 0xe3);
  CHECK(d->bytes()[31] == 0x55);
  CHECK_FALSE(d->empty());

  auto same = Digest::ParseHex(kEmptyHex);
  REQUIRE(same.ok());
  CHECK(*same == *d);
  CHECK(Digest().empty());
  CHECK_FALSE(Digest() == *d);
}

TEST_CASE("Digest::Parse refuses other algorithms as unsupported, naming the algorithm", "[base]") {
  auto d = Digest::Parse("sha512:" + std::string(128, 'a'));
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().code() == ENOTSUP);
  CHECK_THAT(d.status().message(), Catch::Contains("\"sha512\""));
}

TEST_CASE("Digest::Parse refuses malformed digests as invalid", "[base]") {
  const std::string hex(kEmptyHex);
  std::string upper = hex;
  upper[0] = 'E';
  for (const std::string& text :
       {hex, "sha256:" + hex.substr(1), "sha256:" + hex + "0", "sha256:" + upper,
        "sha256:" + hex.substr(0, 63) + "g", std::string("sha256:"), std::string(""), ":" + hex}) {
    INFO(text);
    auto d = Digest::Parse(text);
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().code() == EINVAL);
    CHECK_THAT(d.status().message(), Catch::StartsWith("digest \""));
  }
  auto short_hex = Digest::ParseHex(hex.substr(2));
  REQUIRE_FALSE(short_hex.ok());
  CHECK(short_hex.status().code() == EINVAL);
  CHECK_THAT(short_hex.status().message(), Catch::Contains("64 hex digits"));
  auto upper_hex = Digest::ParseHex(upper);
  REQUIRE_FALSE(upper_hex.ok());
  CHECK_THAT(upper_hex.status().message(), Catch::Contains("lowercase hex"));
}

TEST_CASE("Digest error messages keep control characters out of the message", "[base]") {
  auto d = Digest::Parse("sha256:\n\x01" + std::string(62, 'a'));
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().message().find('\n') == std::string::npos);
  CHECK(d.status().message().find('\x01') == std::string::npos);
}

}  // namespace
}  // namespace layerfs
