// Credentials from --creds and auth files, and WWW-Authenticate challenges.
#include "registry/auth.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TempDir;
using testing::WriteFile;

TEST_CASE("--creds is USER:PASSWORD; the password may hold colons") {
  auto c = ParseCreds("alice:s3:cr:et");
  REQUIRE(c.ok());
  CHECK(c->user == "alice");
  CHECK(c->password == "s3:cr:et");
  CHECK_FALSE(ParseCreds("alice").ok());
  CHECK_FALSE(ParseCreds(":pw").ok());
}

TEST_CASE("base64 round trips, and bad base64 is refused") {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "user:pass", std::string("\0\xff:x", 4)}) {
    auto back = Base64Decode(Base64Encode(s));
    REQUIRE(back);
    CHECK(*back == s);
  }
  CHECK(Base64Encode("user:pass") == "dXNlcjpwYXNz");
  CHECK_FALSE(Base64Decode("abc"));
  CHECK_FALSE(Base64Decode("a!b="));
}

TEST_CASE("auth files: host, host/namespace (longest wins), URLs, docker.io's spellings") {
  TempDir dir;
  const std::string file = dir.Sub("auth.json");
  WriteFile(file, R"({"auths": {
      "registry.example.com:5000": {"auth": ")" +
                      Base64Encode("host:pw1") + R"("},
      "registry.example.com:5000/team": {"auth": ")" +
                      Base64Encode("team:pw2") + R"("},
      "https://index.docker.io/v1/": {"auth": ")" +
                      Base64Encode("hub:pw3") + R"("},
      "helper.example.com": {}
  }})");
  auto find = [&](const std::string& registry, const std::string& repo) {
    auto c = CredentialsFromAuthFile(file, registry, repo, true);
    REQUIRE(c.ok());
    return *c;
  };
  auto c = find("registry.example.com:5000", "other/app");
  REQUIRE(c);
  CHECK(c->user == "host");
  CHECK(c->password == "pw1");
  CHECK(c->from == file);
  c = find("registry.example.com:5000", "team/app");
  REQUIRE(c);
  CHECK(c->user == "team");
  c = find("registry.example.com:5000", "teamx/app");  // a namespace is a whole component
  REQUIRE(c);
  CHECK(c->user == "host");
  c = find("docker.io", "library/debian");
  REQUIRE(c);
  CHECK(c->user == "hub");
  CHECK_FALSE(find("registry.example.com", "team/app"));  // another port is another registry
  CHECK_FALSE(find("helper.example.com", "app"));         // a credential helper's entry

  auto missing = CredentialsFromAuthFile(dir.Sub("none.json"), "r", "a", false);
  REQUIRE(missing.ok());
  CHECK_FALSE(*missing);
  CHECK_FALSE(CredentialsFromAuthFile(dir.Sub("none.json"), "r", "a", true).ok());

  WriteFile(file, "{not json");
  auto bad = CredentialsFromAuthFile(file, "r", "a", false);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), Catch::Contains("not valid JSON"));
  WriteFile(file, R"({"auths": {"r": {"auth": "bm8gY29sb24="}}})");  // "no colon"
  bad = CredentialsFromAuthFile(file, "r", "a", false);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), Catch::Contains("USER:PASSWORD"));
  CHECK_THAT(bad.status().message(), !Catch::Contains("no colon"));
}

TEST_CASE("WWW-Authenticate challenges") {
  auto c = ParseChallenge(
      R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",)"
      R"(scope="repository:team/app:pull,push")");
  REQUIRE(c);
  CHECK(c->scheme == "bearer");
  CHECK(c->params["realm"] == "https://auth.example.com/token");
  CHECK(c->params["service"] == "registry.example.com");
  CHECK(c->params["scope"] == "repository:team/app:pull,push");

  c = ParseChallenge(R"(Basic realm="Registry Realm")");
  REQUIRE(c);
  CHECK(c->scheme == "basic");
  CHECK(c->params["realm"] == "Registry Realm");

  c = ParseChallenge(R"(Bearer realm="a\"b", error=invalid_token)");
  REQUIRE(c);
  CHECK(c->params["realm"] == "a\"b");
  CHECK(c->params["error"] == "invalid_token");

  CHECK_FALSE(ParseChallenge(""));
  CHECK_FALSE(ParseChallenge(R"(Bearer realm="unterminated)"));
  CHECK_FALSE(ParseChallenge("Bearer =x"));
}

}  // namespace
}  // namespace layerfs
