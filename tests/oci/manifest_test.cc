// LoadImage on well-formed images: the layouts `docker save`, `podman save` and `skopeo copy`
// write, as directories and as archives, and the choice of one manifest among several.
#include "oci/manifest.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using json = nlohmann::json;
using testing::PutBlob;
using testing::Sha256Of;
using testing::TarWriter;
using testing::TempDir;
using testing::WriteFile;

constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kLayerType = "application/vnd.oci.image.layer.v1.tar";

// Three small layers, bottom first, each with one file that names it.
std::vector<std::string> ThreeLayers() {
  return {TarWriter().Dir("etc").File("etc/bottom", "0").Finish(),
          TarWriter().File("etc/middle", "1").Finish(), TarWriter().File("top", "2").Finish()};
}

// The bytes a blob range points at.
std::string ReadRange(const BlobRange& blob) {
  std::string out(blob.length, '\0');
  ssize_t n = ::pread(blob.fd(), out.data(), out.size(), static_cast<off_t>(blob.offset));
  REQUIRE(n == static_cast<ssize_t>(out.size()));
  return out;
}

ImageSpec Load(const std::string& path, const LoadOptions& options = {}) {
  auto image = LoadImage(path, options);
  INFO(image.status().message());
  REQUIRE(image.ok());
  return std::move(image).value();
}

// Layers in order with the right diff_ids, history lines and stored bytes.
void CheckLayers(const ImageSpec& image, const std::vector<std::string>& tars,
                 const std::vector<std::string>& stored, Compression compression) {
  REQUIRE(image.layers.size() == tars.size());
  for (size_t i = 0; i < tars.size(); ++i) {
    INFO("layer " << i);
    const LayerSpec& layer = image.layers[i];
    CHECK(layer.index == i);
    REQUIRE(layer.diff_id.has_value());
    CHECK(*layer.diff_id == Sha256Of(tars[i]));
    CHECK(layer.compression == compression);
    CHECK(layer.created_by == "layer " + std::to_string(i));
    CHECK(ReadRange(layer.blob) == stored[i]);
    // Named as `layerfs inspect` lists it: by the digest of the bytes stored.
    CHECK(layer.label == "layer " + std::to_string(i + 1) + " of " + std::to_string(tars.size()) +
                             " (sha256:" + Sha256Of(stored[i]).short_hex() + ")");
  }
}

std::string ArchiveOf(const TempDir& tmp, const std::string& dir, const std::string& name) {
  std::string path = tmp.Sub(name);
  WriteFile(path, testing::TarOfDirectory(dir));
  return path;
}

json Descriptor(const std::string& media_type, const Digest& digest, size_t size) {
  return {{"mediaType", media_type}, {"digest", digest.str()}, {"size", size}};
}

// Stores an image manifest (and its config) for `tars` in the layout at `dir`; returns its
// descriptor for an index.
json PutManifest(const std::string& dir, const std::vector<std::string>& tars) {
  std::string config = testing::ConfigFor(tars);
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kManifestType},
                   {"config", Descriptor("application/vnd.oci.image.config.v1+json",
                                         PutBlob(dir, config), config.size())},
                   {"layers", json::array()}};
  for (const std::string& tar : tars) {
    manifest["layers"].push_back(Descriptor(kLayerType, PutBlob(dir, tar), tar.size()));
  }
  std::string text = manifest.dump();
  return Descriptor(kManifestType, PutBlob(dir, text), text.size());
}

json PutIndex(const std::string& dir, const std::vector<json>& manifests) {
  std::string text = json{{"schemaVersion", 2}, {"manifests", json(manifests)}}.dump();
  return Descriptor(kIndexType, PutBlob(dir, text), text.size());
}

void WriteLayoutIndex(const std::string& dir, const std::vector<json>& manifests) {
  WriteFile(dir + "/index.json", json{{"schemaVersion", 2}, {"manifests", json(manifests)}}.dump());
  WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
}

json WithRef(json desc, const std::string& ref) {
  desc["annotations"] = {{"org.opencontainers.image.ref.name", ref}};
  return desc;
}

json WithPlatform(json desc, const std::string& os, const std::string& arch,
                  const std::string& variant = "") {
  desc["platform"] = {{"os", os}, {"architecture", arch}};
  if (!variant.empty()) desc["platform"]["variant"] = variant;
  return desc;
}

// The single file each test image's top layer has, to tell images apart.
std::string TopFile(const ImageSpec& image) {
  REQUIRE_FALSE(image.layers.empty());
  return ReadRange(image.layers.back().blob);
}

std::vector<std::string> Named(const std::string& name) {
  return {TarWriter().File(name, name).Finish()};
}

TEST_CASE("a docker-save directory loads through the directory and through manifest.json",
          "[oci]") {
  TempDir tmp;
  auto tars = ThreeLayers();
  testing::WriteDockerDir(tmp.path(), tars);
  for (const std::string& path : {tmp.path(), tmp.Sub("manifest.json")}) {
    INFO(path);
    ImageSpec image = Load(path);
    CHECK(image.format == "docker-dir");
    CHECK(image.config == testing::ConfigFor(tars));
    CheckLayers(image, tars, tars, Compression::kNone);
    for (size_t i = 0; i < tars.size(); ++i) {
      CHECK(image.layers[i].path == Sha256Of(tars[i]).hex() + ".tar");
      CHECK(image.layers[i].media_type.empty());
      CHECK(image.layers[i].blob.offset == 0);
    }
    CHECK(image.source != nullptr);
  }
}

TEST_CASE("a docker-save archive loads like its directory, layers read in place", "[oci]") {
  TempDir tmp;
  auto tars = ThreeLayers();
  testing::WriteDockerDir(tmp.Sub("image"), tars, "localhost/app:1");
  ImageSpec image = Load(ArchiveOf(tmp, tmp.Sub("image"), "image.tar"));
  CHECK(image.format == "docker-archive");
  CheckLayers(image, tars, tars, Compression::kNone);
  for (const LayerSpec& layer : image.layers) {
    CHECK(layer.blob.offset > 0);
    CHECK(layer.blob.offset % 512 == 0);
    CHECK_THAT(layer.blob.name, Catch::Contains("image.tar:"));
  }
}

TEST_CASE("docker-save layers that are compressed are recognised by their bytes", "[oci]") {
  TempDir tmp;
  auto tars = ThreeLayers();
  std::vector<std::string> stored = {tars[0], testing::Gzip(tars[1]), testing::Zstd(tars[2])};
  std::string config = testing::ConfigFor(tars);
  std::string config_name = Sha256Of(config).hex() + ".json";
  WriteFile(tmp.Sub(config_name), config);
  json entry = {{"Config", config_name}, {"RepoTags", {"x:1"}}, {"Layers", json::array()}};
  for (size_t i = 0; i < stored.size(); ++i) {
    std::string name = "layer" + std::to_string(i) + ".tar";
    WriteFile(tmp.Sub(name), stored[i]);
    entry["Layers"].push_back(name);
  }
  WriteFile(tmp.Sub("manifest.json"), json::array({entry}).dump());
  ImageSpec image = Load(tmp.path());
  REQUIRE(image.layers.size() == 3);
  CHECK(image.layers[0].compression == Compression::kNone);
  CHECK(image.layers[1].compression == Compression::kGzip);
  CHECK(image.layers[2].compression == Compression::kZstd);
  for (size_t i = 0; i < 3; ++i) CHECK(ReadRange(image.layers[i].blob) == stored[i]);
}

TEST_CASE("an OCI layout loads with plain, gzip and zstd layers", "[oci]") {
  auto [compression, suffix, expected] =
      GENERATE(std::make_tuple(std::string("none"), std::string(""), Compression::kNone),
               std::make_tuple(std::string("gzip"), std::string("+gzip"), Compression::kGzip),
               std::make_tuple(std::string("zstd"), std::string("+zstd"), Compression::kZstd));
  INFO(compression);
  TempDir tmp;
  auto tars = ThreeLayers();
  testing::WriteOciLayout(tmp.path(), tars, compression, "v1");
  for (const std::string& path : {tmp.path(), tmp.Sub("index.json")}) {
    INFO(path);
    ImageSpec image = Load(path);
    CHECK(image.format == "oci-dir");
    CHECK(image.ref == "v1");
    std::vector<std::string> stored;
    for (const LayerSpec& layer : image.layers) {
      stored.push_back(testing::ReadFile(tmp.Sub(layer.path)));
      REQUIRE(layer.blob_digest.has_value());
      CHECK(*layer.blob_digest == Sha256Of(stored.back()));
      CHECK(layer.path == "blobs/sha256/" + layer.blob_digest->hex());
      CHECK(layer.media_type == std::string(kLayerType) + suffix);
    }
    CheckLayers(image, tars, stored, expected);
    if (expected == Compression::kNone) CHECK(stored == tars);
  }
}

TEST_CASE("an OCI archive loads like its directory", "[oci]") {
  TempDir tmp;
  auto tars = ThreeLayers();
  testing::WriteOciLayout(tmp.Sub("layout"), tars, "gzip");
  ImageSpec image = Load(ArchiveOf(tmp, tmp.Sub("layout"), "image.oci.tar"));
  CHECK(image.format == "oci-archive");
  CHECK(image.ref == "latest");
  std::vector<std::string> stored;
  for (const LayerSpec& layer : image.layers) {
    stored.push_back(testing::ReadFile(tmp.Sub("layout/" + layer.path)));
    CHECK(layer.blob.offset > 0);
  }
  CheckLayers(image, tars, stored, Compression::kGzip);
}

// `docker save` before v25 writes each layer as <id>/layer.tar and stores a layer that occurs
// twice once, the second <id>/layer.tar being a symlink to ../<first id>/layer.tar.
void WriteOlderDockerLayout(const std::string& dir, const std::vector<std::string>& tars) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < 3; ++i) ids.push_back(Sha256Of("layer id " + std::to_string(i)).hex());
  std::string config = testing::ConfigFor({tars[0], tars[1], tars[0]});
  std::string config_name = Sha256Of(config).hex() + ".json";
  WriteFile(dir + "/" + config_name, config);
  for (size_t i = 0; i < 2; ++i) {
    WriteFile(dir + "/" + ids[i] + "/layer.tar", tars[i]);
    WriteFile(dir + "/" + ids[i] + "/VERSION", "1.0");
    WriteFile(dir + "/" + ids[i] + "/json", "{}");
  }
  std::filesystem::create_directories(dir + "/" + ids[2]);
  std::filesystem::create_symlink("../" + ids[0] + "/layer.tar", dir + "/" + ids[2] + "/layer.tar");
  WriteFile(dir + "/" + ids[2] + "/VERSION", "1.0");
  json entry = {{"Config", config_name},
                {"RepoTags", {"docker.io/library/old:1"}},
                {"Layers", {ids[0] + "/layer.tar", ids[1] + "/layer.tar", ids[2] + "/layer.tar"}}};
  WriteFile(dir + "/manifest.json", json::array({entry}).dump());
  WriteFile(dir + "/repositories", R"({"old":{"1":")" + ids[2] + R"("}})");
}

TEST_CASE("the older docker layout with a duplicate layer stored as a symlink", "[oci]") {
  TempDir tmp;
  auto tars = ThreeLayers();
  WriteOlderDockerLayout(tmp.Sub("image"), tars);
  std::vector<std::string> expected = {tars[0], tars[1], tars[0]};
  SECTION("as a directory") {
    ImageSpec image = Load(tmp.Sub("image"));
    CHECK(image.format == "docker-dir");
    CheckLayers(image, expected, expected, Compression::kNone);
  }
  SECTION("as an archive") {
    ImageSpec image = Load(ArchiveOf(tmp, tmp.Sub("image"), "image.tar"));
    CHECK(image.format == "docker-archive");
    CheckLayers(image, expected, expected, Compression::kNone);
    // The symlinked layer is the first layer's bytes, in place.
    CHECK(image.layers[2].blob.offset == image.layers[0].blob.offset);
  }
}

TEST_CASE("a layer listed twice is one blob used as two layers", "[oci]") {
  TempDir tmp;
  auto tars = ThreeLayers();
  std::vector<std::string> stack = {tars[0], tars[1], tars[0]};
  WriteLayoutIndex(tmp.path(), {PutManifest(tmp.path(), stack)});
  ImageSpec image = Load(tmp.path());
  CheckLayers(image, stack, stack, Compression::kNone);
  CHECK(image.layers[0].path == image.layers[2].path);
}

TEST_CASE("a nested index is followed to its manifest", "[oci]") {
  TempDir tmp;
  json manifest = PutManifest(tmp.path(), Named("nested"));
  json inner = PutIndex(tmp.path(), {manifest});
  json outer = PutIndex(tmp.path(), {inner});
  WriteLayoutIndex(tmp.path(), {WithRef(outer, "deep")});
  CHECK(TopFile(Load(tmp.path())) == Named("nested")[0]);
  CHECK(TopFile(Load(tmp.path(), {.ref = "deep"})) == Named("nested")[0]);
}

// The name is on the top-level entry, an index; the manifest finally chosen below it has none.
TEST_CASE("the reference picked is reported when it names an index", "[oci]") {
  TempDir tmp;
  json inner = PutIndex(tmp.path(), {PutManifest(tmp.path(), Named("nested"))});
  WriteLayoutIndex(tmp.path(), {WithRef(inner, "deep")});
  CHECK(Load(tmp.path(), {.ref = "deep"}).ref == "deep");
  CHECK(Load(tmp.path()).ref == "deep");
}

TEST_CASE("--ref picks an OCI manifest by its ref.name annotation", "[oci]") {
  TempDir tmp;
  WriteLayoutIndex(tmp.path(), {WithRef(PutManifest(tmp.path(), Named("one")), "one"),
                                WithRef(PutManifest(tmp.path(), Named("two")), "two")});
  CHECK(TopFile(Load(tmp.path(), {.ref = "one"})) == Named("one")[0]);
  ImageSpec two = Load(tmp.path(), {.ref = "two"});
  CHECK(TopFile(two) == Named("two")[0]);
  CHECK(two.ref == "two");

  auto missing = LoadImage(tmp.path(), {.ref = "three"});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ENOENT);
  CHECK_THAT(missing.status().message(), Catch::Contains("index.json") &&
                                             Catch::Contains("\"three\"") &&
                                             Catch::Contains("one, two"));
}

TEST_CASE("--ref picks a docker-save image by RepoTags, registry prefixes optional", "[oci]") {
  TempDir tmp;
  auto put = [&](const std::string& name, const std::vector<std::string>& tags) {
    auto tars = Named(name);
    std::string config = testing::ConfigFor(tars);
    WriteFile(tmp.Sub(Sha256Of(config).hex() + ".json"), config);
    WriteFile(tmp.Sub(name + ".tar"), tars[0]);
    return json{{"Config", Sha256Of(config).hex() + ".json"},
                {"RepoTags", tags},
                {"Layers", {name + ".tar"}}};
  };
  WriteFile(tmp.Sub("manifest.json"),
            json::array({put("app", {"localhost/app:1", "localhost/app:latest"}),
                         put("other", {"docker.io/library/other:2"})})
                .dump());
  CHECK(TopFile(Load(tmp.path(), {.ref = "app:1"})) == Named("app")[0]);
  CHECK(TopFile(Load(tmp.path(), {.ref = "localhost/app:latest"})) == Named("app")[0]);
  ImageSpec other = Load(tmp.path(), {.ref = "other:2"});
  CHECK(TopFile(other) == Named("other")[0]);
  CHECK(other.ref == "docker.io/library/other:2");

  auto missing = LoadImage(tmp.path(), {.ref = "app:2"});
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.status().message(),
             Catch::Contains("manifest.json") && Catch::Contains("\"app:2\"") &&
                 Catch::Contains("localhost/app:1") && Catch::Contains("other:2"));

  auto unchosen = LoadImage(tmp.path(), {});
  REQUIRE_FALSE(unchosen.ok());
  CHECK_THAT(unchosen.status().message(),
             Catch::Contains("manifest.json") && Catch::Contains("holds 2 images") &&
                 Catch::Contains("--ref") && Catch::Contains("localhost/app:latest"));
}

std::string HostArch() {
  struct utsname u;
  REQUIRE(::uname(&u) == 0);
  std::string m = u.machine;
  return m == "x86_64" ? "amd64" : m == "aarch64" ? "arm64" : m;
}

TEST_CASE("--platform picks from a multi-platform index", "[oci]") {
  TempDir tmp;
  const std::string dir = tmp.path();
  json platforms =
      PutIndex(dir, {WithPlatform(PutManifest(dir, Named("amd64")), "linux", "amd64"),
                     WithPlatform(PutManifest(dir, Named("arm64")), "linux", "arm64", "v8"),
                     WithPlatform(PutManifest(dir, Named("armv7")), "linux", "arm", "v7"),
                     WithPlatform(PutManifest(dir, Named("armv6")), "linux", "arm", "v6"),
                     WithPlatform(PutManifest(dir, Named("attestation")), "unknown", "unknown")});
  WriteLayoutIndex(dir, {WithRef(platforms, "multi")});

  CHECK(TopFile(Load(dir, {.platform = "linux/arm64"})) == Named("arm64")[0]);
  CHECK(TopFile(Load(dir, {.platform = "linux/arm/v7"})) == Named("armv7")[0]);
  CHECK(TopFile(Load(dir, {.ref = "multi", .platform = "linux/arm/v6"})) == Named("armv6")[0]);
  const std::string host = HostArch();
  if (host == "amd64" || host == "arm64") CHECK(TopFile(Load(dir)) == Named(host)[0]);

  SECTION("a platform the index lacks is an error that lists what it has") {
    auto missing = LoadImage(dir, {.platform = "linux/s390x"});
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.status().message(), Catch::Contains("--platform") &&
                                               Catch::Contains("linux/amd64") &&
                                               Catch::Contains("linux/arm64"));
  }
  SECTION("a platform that matches two manifests is an error naming their variants") {
    auto ambiguous = LoadImage(dir, {.platform = "linux/arm"});
    REQUIRE_FALSE(ambiguous.ok());
    CHECK_THAT(ambiguous.status().message(), Catch::Contains("choose one") &&
                                                 Catch::Contains("linux/arm/v7") &&
                                                 Catch::Contains("linux/arm/v6"));
  }
}

TEST_CASE("--platform checks a single manifest that states another platform", "[oci]") {
  TempDir tmp;
  const std::string dir = tmp.path();
  WriteLayoutIndex(dir, {WithPlatform(PutManifest(dir, Named("only")), "linux", "riscv64")});
  CHECK(TopFile(Load(dir)) == Named("only")[0]);  // no --platform: the only image is the one
  CHECK(TopFile(Load(dir, {.platform = "linux/riscv64"})) == Named("only")[0]);
  auto wrong = LoadImage(dir, {.platform = "linux/arm64"});
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.status().message(),
             Catch::Contains("no manifest for platform linux/arm64") &&
                 Catch::Contains("linux/riscv64"));
}

TEST_CASE("--platform checks the config of an image whose index states no platform", "[oci]") {
  TempDir tmp;
  const std::string dir = tmp.path();
  WriteLayoutIndex(dir, {PutManifest(dir, Named("only"))});  // its config: linux/amd64
  CHECK(TopFile(Load(dir, {.platform = "linux/amd64"})) == Named("only")[0]);
  auto wrong = LoadImage(dir, {.platform = "linux/arm64"});
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().code() == ENOENT);
  CHECK_THAT(wrong.status().message(),
             Catch::Contains("no image for platform linux/arm64 (--platform); the image is for "
                             "linux/amd64 only"));
}

TEST_CASE("--ref matches references as registries spell them", "[oci]") {
  TempDir tmp;
  WriteLayoutIndex(tmp.path(),
                   {WithRef(PutManifest(tmp.path(), Named("alpine")), "docker.io/library/alpine:latest"),
                    WithRef(PutManifest(tmp.path(), Named("tool")), "registry.example/team/tool:2")});
  for (const char* ref : {"alpine", "alpine:latest", "library/alpine", "docker.io/alpine",
                          "docker.io/library/alpine:latest"}) {
    INFO(ref);
    CHECK(TopFile(Load(tmp.path(), {.ref = ref})) == Named("alpine")[0]);
  }
  CHECK(TopFile(Load(tmp.path(), {.ref = "tool:2"})) == Named("tool")[0]);
  CHECK(TopFile(Load(tmp.path(), {.ref = "team/tool:2"})) == Named("tool")[0]);
  CHECK_FALSE(LoadImage(tmp.path(), {.ref = "ool:2"}).ok());
  CHECK_FALSE(LoadImage(tmp.path(), {.ref = "tool"}).ok());  // tool:latest is not tool:2
  CHECK_FALSE(LoadImage(tmp.path(), {.ref = "alpine:3"}).ok());
}

TEST_CASE("several manifests and none chosen: the error lists the choices", "[oci]") {
  TempDir tmp;
  WriteLayoutIndex(tmp.path(), {WithRef(PutManifest(tmp.path(), Named("one")), "one"),
                                WithRef(PutManifest(tmp.path(), Named("two")), "two")});
  auto result = LoadImage(tmp.path(), {});
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == EINVAL);
  CHECK_THAT(result.status().message(),
             Catch::Contains(tmp.Sub("index.json")) && Catch::Contains("2 manifests") &&
                 Catch::Contains("--ref") && Catch::Contains("one, two"));
}

}  // namespace
}  // namespace layerfs
