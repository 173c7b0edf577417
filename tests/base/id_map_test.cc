#include "base/id_map.h"

#include <catch2/catch.hpp>
#include <string>

namespace layerfs {
namespace {

IdMap Parsed(std::string_view spec) {
  auto r = IdMap::Parse(spec, "uidmapping");
  INFO(r.status().message());
  REQUIRE(r.ok());
  return *r;
}

std::string ParseError(std::string_view spec) {
  auto r = IdMap::Parse(spec, "uidmapping");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EINVAL);
  return r.status().message();
}

TEST_CASE("IdMap: the default shows every id as it is", "[base][idmap]") {
  IdMap m;
  CHECK(m.identity());
  CHECK(m.ToHost(0) == 0);
  CHECK(m.ToHost(4000000000u) == 4000000000u);
  CHECK(m.ToImage(1234) == 1234u);
}

TEST_CASE("IdMap: ranges map both ways, and ids outside them show as nobody", "[base][idmap]") {
  IdMap m = Parsed("0:1000:1:1:100000:65536");
  CHECK_FALSE(m.identity());
  CHECK(m.ToHost(0) == 1000);
  CHECK(m.ToHost(1) == 100000);
  CHECK(m.ToHost(33) == 100032);
  CHECK(m.ToHost(65536) == 165535);
  CHECK(m.ToHost(65537) == IdMap::kOverflowId);
  CHECK(m.ToImage(1000) == 0u);
  CHECK(m.ToImage(100032) == 33u);
  CHECK(m.ToImage(165535) == 65536u);
  CHECK_FALSE(m.ToImage(999).has_value());
  CHECK_FALSE(m.ToImage(165536).has_value());
  CHECK(m.Describe() == "0:1000:1:1:100000:65536");
}

TEST_CASE("IdMap: a range may reach the last id", "[base][idmap]") {
  IdMap m = Parsed("0:0:4294967295");
  CHECK(m.ToHost(4294967294u) == 4294967294u);
  CHECK(Parsed("4294967295:7:1").ToHost(4294967295u) == 7);
}

TEST_CASE("IdMap: self shows every id as the caller, who stands for root", "[base][idmap]") {
  IdMap m = IdMap::Self(1000);
  CHECK(m.squashes());
  CHECK(m.ToHost(0) == 1000);
  CHECK(m.ToHost(33) == 1000);
  CHECK(m.ToImage(1000) == 0u);
  CHECK_FALSE(m.ToImage(0).has_value());
}

TEST_CASE("IdMap: malformed mappings are refused with the reason", "[base][idmap]") {
  CHECK_THAT(ParseError(""), Catch::Contains("is not an id"));
  CHECK_THAT(ParseError("0:1000"), Catch::Contains("groups of three"));
  CHECK_THAT(ParseError("0:1000:1:2"), Catch::Contains("groups of three"));
  CHECK_THAT(ParseError("0:x:1"), Catch::Contains("'x' is not an id"));
  CHECK_THAT(ParseError("0:-1:1"), Catch::Contains("is not an id"));
  CHECK_THAT(ParseError("0:1000:1:"), Catch::Contains("is not an id"));
  CHECK_THAT(ParseError("0:4294967296:1"), Catch::Contains("is not an id"));
  CHECK_THAT(ParseError("0:1000:0"), Catch::Contains("empty or too long"));
  CHECK_THAT(ParseError("4294967295:0:2"), Catch::Contains("empty or too long"));
  CHECK_THAT(ParseError("0:1000:10:5:2000:1"), Catch::Contains("overlap"));
  CHECK_THAT(ParseError("0:1000:10:20:1005:1"), Catch::Contains("overlap"));
  CHECK_THAT(ParseError("1:2"), Catch::StartsWith("uidmapping=1:2: "));
}

}  // namespace
}  // namespace layerfs
