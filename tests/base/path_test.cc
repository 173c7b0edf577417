#include "base/path.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

namespace layerfs {
namespace {

std::string Normalized(std::string_view path) {
  auto r = NormalizePath(path);
  REQUIRE(r.ok());
  return *r;
}

TEST_CASE("NormalizePath drops a leading slash, empty and dot components and a trailing slash",
          "[base]") {
  CHECK(Normalized("etc/passwd") == "etc/passwd");
  CHECK(Normalized("/etc/passwd") == "etc/passwd");
  CHECK(Normalized("./etc/passwd") == "etc/passwd");
  CHECK(Normalized("etc//passwd") == "etc/passwd");
  CHECK(Normalized("etc/./passwd") == "etc/passwd");
  CHECK(Normalized("etc/ssl/") == "etc/ssl");
  CHECK(Normalized("//./etc///ssl/./") == "etc/ssl");
  // A component that merely starts with dots is an ordinary name.
  CHECK(Normalized("./.hidden/...") == ".hidden/...");
}

TEST_CASE("NormalizePath turns every spelling of the root into the empty path", "[base]") {
  CHECK(Normalized("") == "");
  CHECK(Normalized(".") == "");
  CHECK(Normalized("./") == "");
  CHECK(Normalized("/") == "");
  CHECK(Normalized("//.//") == "");
}

TEST_CASE("NormalizePath resolves dot-dot inside the image", "[base]") {
  CHECK(Normalized("a/../b") == "b");
  CHECK(Normalized("a/b/..") == "a");
  CHECK(Normalized("a/b/../../c/d") == "c/d");
  CHECK(Normalized("a/..") == "");
}

TEST_CASE("NormalizePath refuses dot-dot that climbs above the root and names the path", "[base]") {
  for (const char* path : {"..", "../etc/passwd", "/../x", "a/../../x", "./a/b/../../../x"}) {
    INFO(path);
    auto r = NormalizePath(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == EINVAL);
    CHECK_THAT(r.status().message(), Catch::Contains(path));
    CHECK_THAT(r.status().message(), Catch::Contains("leaves the image root"));
  }
}

TEST_CASE("SplitPath and SplitParent take a normalised path apart", "[base]") {
  CHECK(SplitPath("").empty());
  CHECK(SplitPath("a") == std::vector<std::string_view>{"a"});
  CHECK(SplitPath("usr/lib/x86_64") == std::vector<std::string_view>{"usr", "lib", "x86_64"});

  CHECK(SplitParent("a/b/c") == std::pair<std::string_view, std::string_view>{"a/b", "c"});
  CHECK(SplitParent("c") == std::pair<std::string_view, std::string_view>{"", "c"});
}

TEST_CASE("Printable escapes control characters and cuts long paths", "[base]") {
  CHECK(Printable("plain name") == "plain name");
  CHECK(Printable("new\nline\x7f") == "new\\x0aline\\x7f");
  // Bytes of UTF-8 names are kept as they are.
  CHECK(Printable("caf\xc3\xa9") == "caf\xc3\xa9");
  std::string long_path(500, 'x');
  std::string shown = Printable(long_path, 10);
  CHECK(shown == std::string(10, 'x') + "...");
}

}  // namespace
}  // namespace layerfs
