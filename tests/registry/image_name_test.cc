// ParseImageName: the transports skopeo and podman spell, and bare paths.
#include "registry/image_name.h"

#include <catch2/catch.hpp>

namespace layerfs {
namespace {

using T = ImageName::Transport;

ImageName Parse(const std::string& text) {
  auto n = ParseImageName(text);
  INFO(text << ": " << (n.ok() ? "" : n.status().message()));
  REQUIRE(n.ok());
  return *n;
}

std::string ErrorOf(const std::string& text) {
  auto n = ParseImageName(text);
  REQUIRE_FALSE(n.ok());
  return n.status().message();
}

TEST_CASE("docker:// names: registry, repository, tag, digest") {
  ImageName n = Parse("docker://registry.example.com:5000/team/app:1.4");
  CHECK(n.transport == T::kDocker);
  CHECK(n.remote());
  CHECK(n.registry == "registry.example.com:5000");
  CHECK(n.repository == "team/app");
  CHECK(n.tag == "1.4");
  CHECK_FALSE(n.digest);
  CHECK(n.reference() == "1.4");
  CHECK(n.str() == "docker://registry.example.com:5000/team/app:1.4");

  const std::string hex(64, 'a');
  n = Parse("docker://localhost:5000/app@sha256:" + hex);
  CHECK(n.registry == "localhost:5000");
  CHECK(n.repository == "app");
  CHECK(n.tag.empty());
  REQUIRE(n.digest);
  CHECK(n.reference() == "sha256:" + hex);

  n = Parse("docker://localhost/app:v2@sha256:" + hex);  // both: the digest is what is fetched
  CHECK(n.registry == "localhost");
  CHECK(n.tag == "v2");
  CHECK(n.reference() == "sha256:" + hex);

  n = Parse("docker://127.0.0.1:5000/a/b/c");
  CHECK(n.registry == "127.0.0.1:5000");
  CHECK(n.repository == "a/b/c");
  CHECK(n.tag == "latest");
}

TEST_CASE("docker:// names default to docker.io, library/ and latest") {
  ImageName n = Parse("docker://debian");
  CHECK(n.registry == "docker.io");
  CHECK(n.repository == "library/debian");
  CHECK(n.tag == "latest");
  CHECK(n.api_host() == "registry-1.docker.io");

  n = Parse("docker://team/app:3");
  CHECK(n.registry == "docker.io");
  CHECK(n.repository == "team/app");
  CHECK(n.tag == "3");

  n = Parse("docker://quay.io/team/app");
  CHECK(n.api_host() == "quay.io");
}

TEST_CASE("docker:// names that are not valid are refused with the reason") {
  CHECK_THAT(ErrorOf("docker://"), Catch::Contains("no repository"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/App"), Catch::Contains("not a repository name"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/a//b"), Catch::Contains("not a repository name"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/a/"), Catch::Contains("not a repository name"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/-a"), Catch::Contains("not a repository name"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/a:b:c"), Catch::Contains("not a repository name"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/a:-x"), Catch::Contains("not a valid tag"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/a:" + std::string(129, 'x')),
             Catch::Contains("not a valid tag"));
  CHECK_THAT(ErrorOf("docker://localhost:5000/a@sha256:12"), Catch::Contains("image name"));
  CHECK_THAT(ErrorOf("docker://bad_host.example/a"), Catch::Contains("not a host name"));
  CHECK_THAT(ErrorOf("http://example.com/a"), Catch::Contains("unknown transport"));
  CHECK_THAT(ErrorOf(""), Catch::Contains("no image"));
}

TEST_CASE("local transports: the path ends at the first colon, as in skopeo") {
  ImageName n = Parse("oci:/var/images/app:1.0");
  CHECK(n.transport == T::kOci);
  CHECK(n.path == "/var/images/app");
  CHECK(n.ref == "1.0");
  CHECK_FALSE(n.remote());

  n = Parse("oci:layout");
  CHECK(n.path == "layout");
  CHECK(n.ref.empty());

  n = Parse("docker-archive:/tmp/image.tar:app:2");
  CHECK(n.transport == T::kDockerArchive);
  CHECK(n.path == "/tmp/image.tar");
  CHECK(n.ref == "app:2");

  n = Parse("oci-archive:image.tar");
  CHECK(n.transport == T::kOciArchive);
  CHECK(n.path == "image.tar");
  CHECK(n.str() == "oci-archive:image.tar");

  CHECK_THAT(ErrorOf("oci:"), Catch::Contains("no path"));
}

TEST_CASE("anything else is a path, colons and all") {
  ImageName n = Parse("/var/images/app:1.0/manifest.json");
  CHECK(n.transport == T::kPath);
  CHECK(n.path == "/var/images/app:1.0/manifest.json");
  CHECK(Parse("image.tar").path == "image.tar");
}

}  // namespace
}  // namespace layerfs
