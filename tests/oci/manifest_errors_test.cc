// LoadImage on images that are broken or hostile: each gives a non-OK Status whose message names
// the file at fault and the problem, and none crashes, hangs or reads outside the image.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "oci/manifest.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using json = nlohmann::json;
using testing::PutBlob;
using testing::ReadFile;
using testing::Sha256Of;
using testing::TarWriter;
using testing::TempDir;
using testing::WriteFile;

constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kConfigType = "application/vnd.oci.image.config.v1+json";
constexpr const char* kLayerType = "application/vnd.oci.image.layer.v1.tar";

std::vector<std::string> TwoLayers() {
  return {TarWriter().File("a", "A").Finish(), TarWriter().File("b", "B").Finish()};
}

json Descriptor(const std::string& media_type, const Digest& digest, size_t size) {
  return {{"mediaType", media_type}, {"digest", digest.str()}, {"size", size}};
}

// A valid OCI layout whose parts a test spoils one at a time before calling Write().
struct OciImage {
  explicit OciImage(std::string directory, std::vector<std::string> layer_tars = TwoLayers())
      : dir(std::move(directory)), tars(std::move(layer_tars)) {
    config = json::parse(testing::ConfigFor(tars));
    manifest = {{"schemaVersion", 2}, {"mediaType", kManifestType}, {"layers", json::array()}};
    for (const std::string& tar : tars) {
      manifest["layers"].push_back(Descriptor(kLayerType, PutBlob(dir, tar), tar.size()));
    }
  }

  // Stores config and manifest (under their digests) and writes index.json and oci-layout.
  // Returns the manifest's path inside the layout.
  std::string Write() {
    std::string config_text = config_override.empty() ? config.dump() : config_override;
    manifest["config"] = Descriptor(kConfigType, PutBlob(dir, config_text), config_text.size());
    std::string text = manifest_override.empty() ? manifest.dump() : manifest_override;
    Digest digest = PutBlob(dir, text);
    index = {{"schemaVersion", 2},
             {"manifests", json::array({Descriptor(kManifestType, digest, text.size())})}};
    WriteFile(dir + "/index.json", index.dump());
    WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    return "blobs/sha256/" + digest.hex();
  }

  std::string dir;
  std::vector<std::string> tars;
  json config;
  json manifest;
  json index;
  std::string config_override;    // config bytes to store instead of config.dump()
  std::string manifest_override;  // manifest bytes to store instead of manifest.dump()
};

// A valid docker-save directory whose manifest.json a test may rewrite.
json WriteDocker(const std::string& dir, const std::vector<std::string>& tars = TwoLayers()) {
  testing::WriteDockerDir(dir, tars);
  return json::parse(ReadFile(dir + "/manifest.json"));
}

// Loads `path` and requires a non-OK status whose message holds every one of `parts`; returns
// the status's errno.
int ExpectError(const std::string& path, const std::vector<std::string>& parts,
                const LoadOptions& options = {}) {
  Result<ImageSpec> result = Status::Ok();
  REQUIRE_NOTHROW(result = LoadImage(path, options));
  REQUIRE_FALSE(result.ok());
  const Status status = result.status();
  INFO("message: " << status.message());
  CHECK(status.code() != 0);
  for (const std::string& part : parts) CHECK_THAT(status.message(), Catch::Contains(part));
  return status.code();
}

std::string Nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST_CASE("a path that is no image is refused", "[oci]") {
  TempDir tmp;
  ExpectError(tmp.Sub("missing"), {tmp.Sub("missing"), "No such file"});
  ExpectError(tmp.path(), {tmp.path(), "not an image", "manifest.json", "index.json"});
  WriteFile(tmp.Sub("junk.tar"), std::string(1000, 'x'));
  ExpectError(tmp.Sub("junk.tar"), {tmp.Sub("junk.tar"), "not an image archive"});
  WriteFile(tmp.Sub("empty.tar"), "");
  ExpectError(tmp.Sub("empty.tar"), {tmp.Sub("empty.tar")});
}

TEST_CASE("a malformed manifest.json is refused with the reason", "[oci]") {
  TempDir tmp;
  json good = WriteDocker(tmp.path());
  const std::string file = tmp.Sub("manifest.json");
  struct Case {
    std::string text;
    std::string problem;
  };
  json no_config = good, no_layers = good, layers_object = good, layer_number = good;
  no_config[0].erase("Config");
  no_layers[0].erase("Layers");
  layers_object[0]["Layers"] = json::object();
  layer_number[0]["Layers"][1] = 7;
  for (const Case& c : std::vector<Case>{
           {"", "not valid JSON"},
           {"[{\"Config\": ", "not valid JSON"},
           {"{}", "is not an array"},
           {"[]", "lists no image"},
           {"[1]", "is not an object"},
           {no_config.dump(), "Config is missing"},
           {no_layers.dump(), "Layers is missing"},
           {layers_object.dump(), "Layers is not an array"},
           {layer_number.dump(), "Layers[1] is not a string"},
       }) {
    INFO(c.text);
    WriteFile(file, c.text);
    ExpectError(tmp.path(), {file, c.problem});
  }
}

TEST_CASE("missing or malformed index.json and oci-layout are refused with the reason", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  image.Write();
  const std::string index = tmp.Sub("index.json"), layout = tmp.Sub("oci-layout");
  const std::string good_index = ReadFile(index);

  SECTION("index.json") {
    for (const auto& [text, problem] : std::vector<std::pair<std::string, std::string>>{
             {"{", "not valid JSON"},
             {"[]", "is not an object"},
             {"{}", "manifests is missing"},
             {R"({"manifests": {}})", "manifests is not an array"},
             {R"({"manifests": []})", "lists no manifest"},
             {R"({"manifests": [{"size": 1}]})", "manifests[0].digest is missing"},
             {R"({"manifests": [{"digest": "sha256:)" + std::string(64, 'a') + R"("}]})",
              "manifests[0].size is missing"},
             {R"({"manifests": [{"digest": "sha256:)" + std::string(64, 'a') +
                  R"(", "size": -1}]})",
              "size is negative"},
             {R"({"manifests": [{"digest": "sha256:)" + std::string(64, 'a') +
                  R"(", "size": 1.5}]})",
              "size is not an integer"},
         }) {
      INFO(text);
      WriteFile(index, text);
      ExpectError(tmp.path(), {index, problem});
    }
    std::filesystem::remove(index);
    WriteFile(layout, R"({"imageLayoutVersion":"1.0.0"})");
    ExpectError(tmp.path(), {index, "No such file"});
  }
  SECTION("oci-layout") {
    for (const auto& [text, problem] : std::vector<std::pair<std::string, std::string>>{
             {"", "not valid JSON"},
             {"{}", "imageLayoutVersion is missing"},
             {R"({"imageLayoutVersion": 1})", "imageLayoutVersion is not a string"},
             {R"({"imageLayoutVersion": "2.0.0"})", "version 2.0.0 is not supported"},
         }) {
      INFO(text);
      WriteFile(layout, text);
      ExpectError(tmp.path(), {layout, problem});
    }
    std::filesystem::remove(layout);
    ExpectError(tmp.path(), {layout, "No such file"});
    ExpectError(index, {layout, "No such file"});
  }
}

TEST_CASE("JSON nested 10,000 levels deep is refused, not recursed into", "[oci]") {
  TempDir tmp;
  const std::string deep = Nested(10000);
  SECTION("manifest.json") {
    WriteDocker(tmp.path());
    WriteFile(tmp.Sub("manifest.json"), deep);
    ExpectError(tmp.path(), {tmp.Sub("manifest.json"), "nested deeper than"});
  }
  SECTION("index.json") {
    OciImage(tmp.path()).Write();
    WriteFile(tmp.Sub("index.json"), R"({"manifests": )" + deep + "}");
    ExpectError(tmp.path(), {tmp.Sub("index.json"), "nested deeper than"});
  }
  SECTION("an image manifest") {
    OciImage image(tmp.path());
    image.manifest_override = R"({"schemaVersion": 2, "annotations": {"x": )" + deep + "}}";
    std::string path = image.Write();
    ExpectError(tmp.path(), {path, "nested deeper than"});
  }
  SECTION("an image config") {
    OciImage image(tmp.path());
    image.config_override = deep;
    image.Write();
    ExpectError(tmp.path(), {"blobs/sha256/", "nested deeper than"});
  }
  SECTION("objects rather than arrays") {
    OciImage(tmp.path()).Write();
    std::string objects;
    for (int i = 0; i < 10000; ++i) objects += R"({"a":)";
    objects += "1" + std::string(10000, '}');
    WriteFile(tmp.Sub("index.json"), objects);
    ExpectError(tmp.path(), {tmp.Sub("index.json"), "nested deeper than"});
  }
  SECTION("nesting well within the limit still parses") {
    OciImage image(tmp.path());
    image.Write();
    image.index["manifests"][0]["annotations"]["x"] = json::parse(Nested(kMaxJsonDepth / 2));
    WriteFile(tmp.Sub("index.json"), image.index.dump());
    CHECK(LoadImage(tmp.path(), {}).ok());
  }
}

// nlohmann reports a number too large for a double ("1e400") with json::out_of_range, not
// json::parse_error; it too must become a Status.
TEST_CASE("a number out of range in a manifest is an error, not an exception", "[oci]") {
  TempDir tmp;
  OciImage(tmp.path()).Write();
  json index = json::parse(ReadFile(tmp.Sub("index.json")));
  std::string text = index.dump();
  text.replace(text.find("\"schemaVersion\":2"), 17, "\"schemaVersion\":1e400");
  WriteFile(tmp.Sub("index.json"), text);
  ExpectError(tmp.path(), {tmp.Sub("index.json"), "not valid JSON"});
}

TEST_CASE("manifests over the size limit are refused before they are read", "[oci]") {
  TempDir tmp;
  SECTION("manifest.json") {
    WriteDocker(tmp.path());
    std::filesystem::resize_file(tmp.Sub("manifest.json"), kMaxManifestBytes + 1);
    ExpectError(tmp.path(), {tmp.Sub("manifest.json"), "too large"});
  }
  SECTION("index.json") {
    OciImage(tmp.path()).Write();
    std::filesystem::resize_file(tmp.Sub("index.json"), kMaxManifestBytes + 1);
    ExpectError(tmp.path(), {tmp.Sub("index.json"), "too large"});
  }
  SECTION("a manifest whose descriptor states a huge size") {
    OciImage image(tmp.path());
    image.Write();
    image.index["manifests"][0]["size"] = int64_t{1} << 40;
    WriteFile(tmp.Sub("index.json"), image.index.dump());
    ExpectError(tmp.path(), {"manifest", "sha256:", "too large"});
  }
  SECTION("a manifest blob over the limit with a matching descriptor") {
    OciImage image(tmp.path());
    std::string path = image.Write();
    std::filesystem::resize_file(tmp.Sub(path), kMaxManifestBytes + 1);
    image.index["manifests"][0]["size"] = kMaxManifestBytes + 1;
    WriteFile(tmp.Sub("index.json"), image.index.dump());
    ExpectError(tmp.path(), {"too large"});
  }
}

TEST_CASE("a blob the manifests name but the image lacks is refused", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  std::string manifest_path = image.Write();
  const std::string layer1 =
      "blobs/sha256/" +
      Digest::Parse(image.manifest["layers"][1]["digest"].get<std::string>()).value().hex();
  const std::string config =
      "blobs/sha256/" +
      Digest::Parse(image.manifest["config"]["digest"].get<std::string>()).value().hex();
  SECTION("a layer") {
    std::filesystem::remove(tmp.Sub(layer1));
    // Which descriptor of which file names the blob that is not there.
    int code = ExpectError(tmp.path(), {tmp.Sub(manifest_path) + ": layers[1] names the blob of "
                                        "layer 2 of 2 sha256:",
                                        "which the image does not hold", tmp.Sub(layer1)});
    CHECK(code == ENOENT);
  }
  SECTION("the config") {
    std::filesystem::remove(tmp.Sub(config));
    ExpectError(tmp.path(), {tmp.Sub(manifest_path) + ": config names the config sha256:",
                             "which the image does not hold", tmp.Sub(config)});
  }
  SECTION("the manifest") {
    std::filesystem::remove(tmp.Sub(manifest_path));
    ExpectError(tmp.path(), {tmp.Sub("index.json") + ": manifests[0] names the manifest sha256:",
                             "which the image does not hold", tmp.Sub(manifest_path)});
  }
  SECTION("a docker-save layer") {
    TempDir docker;
    json manifest = WriteDocker(docker.path());
    std::string layer = manifest[0]["Layers"][0].get<std::string>();
    std::filesystem::remove(docker.Sub(layer));
    ExpectError(docker.path(), {docker.Sub(layer), "No such file", "layer 1 of"});
  }
  SECTION("a docker-save config") {
    TempDir docker;
    json manifest = WriteDocker(docker.path());
    std::filesystem::remove(docker.Sub(manifest[0]["Config"].get<std::string>()));
    ExpectError(docker.path(), {docker.Sub(manifest[0]["Config"].get<std::string>())});
  }
}

TEST_CASE("a config or manifest whose bytes do not match its digest is refused", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  std::string manifest_path = image.Write();
  auto tamper = [](const std::string& path) {
    std::string bytes = ReadFile(path);
    bytes[bytes.size() / 2] ^= 0x01;  // same size, other bytes
    WriteFile(path, bytes);
  };
  SECTION("the manifest") {
    tamper(tmp.Sub(manifest_path));
    int code =
        ExpectError(tmp.path(), {tmp.Sub(manifest_path), "manifest", "does not match its digest"});
    CHECK(code == EIO);
  }
  SECTION("the config") {
    std::string config =
        "blobs/sha256/" +
        Digest::Parse(image.manifest["config"]["digest"].get<std::string>()).value().hex();
    tamper(tmp.Sub(config));
    ExpectError(tmp.path(), {tmp.Sub(config), "config", "does not match its digest"});
  }
  SECTION("a nested index") {
    std::string text = json{{"schemaVersion", 2}, {"manifests", image.index["manifests"]}}.dump();
    Digest nested = PutBlob(tmp.path(), text);
    WriteFile(
        tmp.Sub("index.json"),
        json{{"manifests", json::array({Descriptor(kIndexType, nested, text.size())})}}.dump());
    tamper(tmp.Sub("blobs/sha256/" + nested.hex()));
    ExpectError(tmp.path(), {nested.hex(), "image index", "does not match its digest"});
  }
  SECTION("a docker-save config named by its digest") {
    TempDir docker;
    json manifest = WriteDocker(docker.path());
    std::string config = docker.Sub(manifest[0]["Config"].get<std::string>());
    tamper(config);
    ExpectError(docker.path(), {config, "does not match the digest in its name"});
  }
}

TEST_CASE("an image of more layers than layerfs numbers is refused before its blobs are opened",
          "[oci]") {
  TempDir tmp;
  const std::string too_many = "lists " + std::to_string(kMaxLayers + 1) + " layers";
  SECTION("docker-save") {
    json manifest = WriteDocker(tmp.path());
    json layer = manifest[0]["Layers"][0];
    manifest[0]["Layers"] = json::array();
    for (size_t i = 0; i <= kMaxLayers; ++i) manifest[0]["Layers"].push_back(layer);
    WriteFile(tmp.Sub("manifest.json"), manifest.dump());
    int code = ExpectError(tmp.path(), {tmp.Sub("manifest.json"), too_many, "at most 65535"});
    CHECK(code == ENOTSUP);
  }
  SECTION("OCI") {
    OciImage image(tmp.path());
    json layer = image.manifest["layers"][0];
    image.manifest["layers"] = json::array();
    for (size_t i = 0; i <= kMaxLayers; ++i) image.manifest["layers"].push_back(layer);
    image.Write();
    ExpectError(tmp.path(), {too_many, "at most 65535"});
  }
}

TEST_CASE("a blob whose size differs from its descriptor is refused", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  SECTION("a layer") {
    image.manifest["layers"][1]["size"] = image.tars[1].size() + 1;
    image.Write();
    ExpectError(tmp.path(), {"layer 2 of", "is " + std::to_string(image.tars[1].size()) + " bytes",
                             "descriptor says " + std::to_string(image.tars[1].size() + 1)});
  }
  SECTION("a layer blob cut short") {
    image.Write();
    std::string layer0 = "blobs/sha256/" + Sha256Of(image.tars[0]).hex();
    std::filesystem::resize_file(tmp.Sub(layer0), 100);
    ExpectError(tmp.path(), {tmp.Sub(layer0), "layer 1 of", "is 100 bytes"});
  }
  SECTION("the manifest") {
    image.Write();
    image.index["manifests"][0]["size"] = image.index["manifests"][0]["size"].get<int>() - 1;
    WriteFile(tmp.Sub("index.json"), image.index.dump());
    ExpectError(tmp.path(), {"manifest", "its descriptor says"});
  }
}

TEST_CASE("an unsupported layer media type is refused, naming the type", "[oci]") {
  const std::string type =
      GENERATE(std::string("application/vnd.oci.image.layer.v1.tar+bzip2"),
               std::string("application/vnd.oci.image.layer.v1.tar+gzip+encrypted"),
               std::string("application/vnd.oci.image.layer.v1.tar+zstd+encrypted"),
               std::string("application/vnd.docker.image.rootfs.diff.tar.bzip2"),
               std::string("application/octet-stream"), std::string(""));
  INFO(type);
  TempDir tmp;
  OciImage image(tmp.path());
  image.manifest["layers"][1]["mediaType"] = type;
  std::string manifest_path = image.Write();
  int code = ExpectError(tmp.path(), {tmp.Sub(manifest_path), "layer 2 of", "\"" + type + "\"",
                                      "not a supported layer type"});
  CHECK(code == ENOTSUP);
}

TEST_CASE("a manifest of an unsupported media type is refused", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  SECTION("as the index says") {
    image.Write();
    image.index["manifests"][0]["mediaType"] =
        "application/vnd.docker.distribution.manifest.v1+json";
    WriteFile(tmp.Sub("index.json"), image.index.dump());
    ExpectError(tmp.path(), {tmp.Sub("index.json"), "manifest.v1+json", "not supported"});
  }
  SECTION("as the manifest itself says") {
    image.manifest["mediaType"] = kIndexType;
    std::string path = image.Write();
    ExpectError(tmp.path(), {tmp.Sub(path), "is not an image manifest"});
  }
}

TEST_CASE("a digest of another algorithm or the wrong length is refused", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  const std::string hex = std::string(64, 'a');
  struct Case {
    std::string digest;
    std::string problem;
  };
  for (const Case& c : std::vector<Case>{
           {"sha512:" + std::string(128, 'a'), "algorithm \"sha512\" is not supported"},
           {"sha256:" + hex.substr(0, 63), "64 hex digits"},
           {"sha256:" + hex + "a", "64 hex digits"},
           {"sha256:" + std::string(64, 'A'), "not lowercase hex"},
           {"sha256:../../../../etc/passwd" + std::string(42, 'a'), "not lowercase hex"},
           {hex, "expected sha256:"},
           {"", "expected sha256:"},
       }) {
    INFO(c.digest);
    SECTION("in index.json: " + c.digest) {
      image.Write();
      image.index["manifests"][0]["digest"] = c.digest;
      WriteFile(tmp.Sub("index.json"), image.index.dump());
      ExpectError(tmp.path(), {tmp.Sub("index.json"), "manifests[0]", c.problem});
    }
    SECTION("for a layer: " + c.digest) {
      image.manifest["layers"][0]["digest"] = c.digest;
      std::string path = image.Write();
      ExpectError(tmp.path(), {tmp.Sub(path), "layers[0]", c.problem});
    }
    SECTION("in the config's diff_ids: " + c.digest) {
      image.config["rootfs"]["diff_ids"][1] = c.digest;
      image.Write();
      ExpectError(tmp.path(), {"rootfs.diff_ids[1]", c.problem});
    }
  }
}

TEST_CASE("an index that lists itself or nests without end is refused", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  image.Write();
  SECTION("an index blob that names its own digest") {
    // No blob can hold its own sha256, so the file stored under the name it lists is not the one
    // it names: the loop ends at the first re-read, by the digest check or the cycle check.
    Digest self = Sha256Of("index that lists itself");
    std::string text;
    for (int round = 0; round < 2; ++round) {
      text = json{{"schemaVersion", 2},
                  {"manifests", json::array({Descriptor(kIndexType, self, text.size())})}}
                 .dump();
    }
    WriteFile(tmp.Sub("blobs/sha256/" + self.hex()), text);
    WriteFile(tmp.Sub("index.json"),
              json{{"manifests", json::array({Descriptor(kIndexType, self, text.size())})}}.dump());
    ExpectError(tmp.path(), {self.hex()});
  }
  SECTION("indexes nested deeper than the limit") {
    json desc = image.index["manifests"][0];
    for (int level = 0; level < 12; ++level) {
      std::string text = json{{"schemaVersion", 2}, {"manifests", json::array({desc})}}.dump();
      desc = Descriptor(kIndexType, PutBlob(tmp.path(), text), text.size());
    }
    WriteFile(tmp.Sub("index.json"), json{{"manifests", json::array({desc})}}.dump());
    ExpectError(tmp.path(), {"nested too deeply"});
  }
}

TEST_CASE("diff_ids that do not match the layers in number are refused", "[oci]") {
  TempDir tmp;
  SECTION("OCI: fewer diff_ids") {
    OciImage image(tmp.path());
    image.config["rootfs"]["diff_ids"].erase(1);
    image.Write();
    ExpectError(tmp.path(), {"blobs/sha256/", "rootfs.diff_ids lists 1 layers", "the manifest 2"});
  }
  SECTION("OCI: more diff_ids") {
    OciImage image(tmp.path());
    image.config["rootfs"]["diff_ids"].push_back(Sha256Of("extra").str());
    image.Write();
    ExpectError(tmp.path(), {"rootfs.diff_ids lists 3 layers"});
  }
  SECTION("OCI: no rootfs") {
    OciImage image(tmp.path());
    image.config.erase("rootfs");
    image.Write();
    ExpectError(tmp.path(), {"rootfs is missing"});
  }
  SECTION("docker-save") {
    json manifest = WriteDocker(tmp.path());
    manifest[0]["Layers"].push_back(manifest[0]["Layers"][0]);
    WriteFile(tmp.Sub("manifest.json"), manifest.dump());
    ExpectError(tmp.path(), {manifest[0]["Config"].get<std::string>(),
                             "rootfs.diff_ids lists 2 layers", "the manifest 3"});
  }
}

TEST_CASE("Layers and Config paths that leave the image are refused", "[oci]") {
  TempDir tmp;
  WriteFile(tmp.Sub("outside.tar"), TwoLayers()[0]);
  const std::string image_dir = tmp.Sub("image");
  json manifest = WriteDocker(image_dir);
  std::filesystem::create_directories(image_dir + "/sub");
  // Section names must not change between runs of the test case, so the absolute path (in a new
  // temporary directory each run) goes by a label.
  const std::vector<std::pair<std::string, std::string>> paths = {
      {"../outside.tar", "../outside.tar"},
      {"sub/../../outside.tar", "sub/../../outside.tar"},
      {"an absolute path", tmp.Sub("outside.tar")}};
  for (const auto& [label, bad] : paths) {
    INFO(bad);
    SECTION("a layer path " + label) {
      manifest[0]["Layers"][1] = bad;
      WriteFile(image_dir + "/manifest.json", manifest.dump());
      int code = ExpectError(image_dir, {"layer 2 of", "points outside the image"});
      CHECK(code == EXDEV);
    }
    SECTION("the config path " + label) {
      WriteFile(tmp.Sub("outside.json"),
                ReadFile(image_dir + "/" + manifest[0]["Config"].get<std::string>()));
      manifest[0]["Config"] = bad.substr(0, bad.size() - 4) + ".json";
      WriteFile(image_dir + "/manifest.json", manifest.dump());
      ExpectError(image_dir, {"points outside the image"});
    }
    SECTION("in an archive, a layer path " + label) {
      manifest[0]["Layers"][1] = bad;
      WriteFile(image_dir + "/manifest.json", manifest.dump());
      WriteFile(tmp.Sub("image.tar"), testing::TarOfDirectory(image_dir));
      ExpectError(tmp.Sub("image.tar"), {tmp.Sub("image.tar"), "layer 2 of"});
    }
  }
}

TEST_CASE("a blob that is a symlink out of the image is refused", "[oci]") {
  TempDir tmp;
  const std::string dir = tmp.Sub("image");
  OciImage image(dir);
  image.Write();
  const std::string layer0 = dir + "/blobs/sha256/" + Sha256Of(image.tars[0]).hex();
  // The target outside has exactly the right bytes: only where it is makes it wrong.
  WriteFile(tmp.Sub("outside"), image.tars[0]);
  std::filesystem::remove(layer0);
  SECTION("relative symlink") {
    std::filesystem::create_symlink("../../../outside", layer0);
    int code = ExpectError(dir, {layer0, "points outside the image"});
    CHECK(code == EXDEV);
  }
  SECTION("absolute symlink") {
    std::filesystem::create_symlink(tmp.Sub("outside"), layer0);
    ExpectError(dir, {layer0, "points outside the image"});
  }
  SECTION("a symlinked blobs directory") {
    std::filesystem::create_directories(tmp.Sub("elsewhere"));
    std::filesystem::rename(dir + "/blobs", tmp.Sub("elsewhere/blobs"));
    std::filesystem::create_symlink(tmp.Sub("elsewhere/blobs"), dir + "/blobs");
    ExpectError(dir, {"points outside the image"});
  }
  SECTION("a symlinked index.json") {
    std::filesystem::create_symlink("../../../outside", layer0);
    std::filesystem::rename(dir + "/index.json", tmp.Sub("index.json"));
    std::filesystem::create_symlink("../index.json", dir + "/index.json");
    ExpectError(dir, {"index.json", "points outside the image"});
  }
  SECTION("in an archive") {
    std::string archive = tmp.Sub("image.tar");
    std::string rel = "blobs/sha256/" + Sha256Of(image.tars[0]).hex();
    for (const std::string& target : {std::string("../../../outside"), tmp.Sub("outside")}) {
      INFO(target);
      std::filesystem::remove(layer0);
      std::filesystem::create_symlink(target, layer0);
      WriteFile(archive, testing::TarOfDirectory(dir));
      ExpectError(archive, {archive + ":" + rel, "points outside the image"});
    }
  }
}

TEST_CASE("symlinks inside the image are followed, loops are not", "[oci]") {
  TempDir tmp;
  OciImage image(tmp.path());
  image.Write();
  const std::string rel = "blobs/sha256/" + Sha256Of(image.tars[0]).hex();
  std::filesystem::rename(tmp.Sub(rel), tmp.Sub("real-layer"));
  SECTION("a symlink to a file inside is fine") {
    std::filesystem::create_symlink("../../real-layer", tmp.Sub(rel));
    CHECK(LoadImage(tmp.path(), {}).ok());
  }
  SECTION("a symlink loop") {
    std::filesystem::create_symlink("loop-b", tmp.Sub("blobs/sha256/loop-a"));
    std::filesystem::create_symlink("loop-a", tmp.Sub("blobs/sha256/loop-b"));
    std::filesystem::create_symlink("loop-a", tmp.Sub(rel));
    ExpectError(tmp.path(), {tmp.Sub(rel)});
  }
  SECTION("a symlink loop in an archive") {
    TarWriter outer;
    outer.File("oci-layout", ReadFile(tmp.Sub("oci-layout")))
        .File("index.json", ReadFile(tmp.Sub("index.json")));
    for (const auto& entry : std::filesystem::directory_iterator(tmp.Sub("blobs/sha256"))) {
      std::string name = "blobs/sha256/" + entry.path().filename().string();
      if (name != rel) outer.File(name, ReadFile(entry.path().string()));
    }
    outer.Symlink(rel, "loop").Symlink("blobs/sha256/loop", "../../" + rel);
    WriteFile(tmp.Sub("image.tar"), outer.Finish());
    ExpectError(tmp.Sub("image.tar"), {rel, "too many links"});
  }
}

TEST_CASE("a compressed docker archive is refused with a hint to decompress it", "[oci]") {
  TempDir tmp;
  WriteDocker(tmp.Sub("image"));
  const std::string tar = testing::TarOfDirectory(tmp.Sub("image"));
  SECTION("gzip") {
    WriteFile(tmp.Sub("image.tar.gz"), testing::Gzip(tar));
    int code = ExpectError(tmp.Sub("image.tar.gz"),
                           {tmp.Sub("image.tar.gz"), "compressed archive (gzip)", "decompress"});
    CHECK(code == ENOTSUP);
  }
  SECTION("zstd") {
    WriteFile(tmp.Sub("image.tar.zst"), testing::Zstd(tar));
    ExpectError(tmp.Sub("image.tar.zst"), {"compressed archive", "decompress"});
  }
}

TEST_CASE("a truncated archive is refused", "[oci]") {
  TempDir tmp;
  auto tars = TwoLayers();
  tars[1] = TarWriter().File("big", std::string(64 << 10, 'b')).Finish();
  WriteDocker(tmp.Sub("image"), tars);
  const std::string whole = testing::TarOfDirectory(tmp.Sub("image"));
  // Cut inside the last layer's data, inside a header, and at a header boundary missing the rest.
  const size_t layer_at = whole.find(Sha256Of(tars[1]).hex() + ".tar");
  REQUIRE(layer_at != std::string::npos);
  for (size_t cut : {whole.size() / 2, layer_at + 100, size_t{512 + 100}, size_t{1024}}) {
    INFO("cut at " << cut << " of " << whole.size());
    WriteFile(tmp.Sub("image.tar"), whole.substr(0, cut));
    ExpectError(tmp.Sub("image.tar"), {tmp.Sub("image.tar")});
  }
  WriteFile(tmp.Sub("image.tar"), whole.substr(0, layer_at + 100 + 512 * 4));
  ExpectError(tmp.Sub("image.tar"), {tmp.Sub("image.tar"), "truncated"});
}

// Replaces each value of `doc` in turn, leaves and containers alike, with a value of every JSON
// type and calls `load` with the result.
void ForEachWrongType(const json& doc, const std::function<void(const json&)>& load) {
  const json wrong[] = {nullptr, 7, -1, "text", json::array(), json::object(), true, 1.5};
  std::set<std::string> pointers;
  const json flat = doc.flatten();
  for (const auto& [leaf, value] : flat.items()) {
    for (json::json_pointer p(leaf);; p = p.parent_pointer()) {
      pointers.insert(p.to_string());
      if (p.empty()) break;
    }
  }
  for (const std::string& pointer : pointers) {
    for (const json& w : wrong) {
      json changed = doc;
      changed[json::json_pointer(pointer)] = w;
      load(changed);
    }
  }
}

TEST_CASE("values of the wrong JSON type anywhere give a Status, never an exception", "[oci]") {
  TempDir tmp;
  int loads = 0;
  auto must_not_throw = [&](const std::string& path) {
    ++loads;
    Result<ImageSpec> result = Status::Ok();
    REQUIRE_NOTHROW(result = LoadImage(path, {}));
    if (!result.ok()) CHECK_FALSE(result.status().message().empty());
  };
  SECTION("manifest.json") {
    json manifest = WriteDocker(tmp.path());
    ForEachWrongType(manifest, [&](const json& changed) {
      WriteFile(tmp.Sub("manifest.json"), changed.dump());
      must_not_throw(tmp.path());
    });
  }
  SECTION("index.json") {
    OciImage image(tmp.path());
    image.index["manifests"][0]["annotations"] = {{"org.opencontainers.image.ref.name", "x"}};
    image.index["manifests"][0]["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
    image.Write();
    ForEachWrongType(image.index, [&](const json& changed) {
      WriteFile(tmp.Sub("index.json"), changed.dump());
      must_not_throw(tmp.path());
    });
  }
  SECTION("the image manifest, stored under its new digest") {
    OciImage image(tmp.path());
    image.Write();
    json manifest = image.manifest;
    ForEachWrongType(manifest, [&](const json& changed) {
      std::string text = changed.dump();
      WriteFile(
          tmp.Sub("index.json"),
          json{{"manifests", {Descriptor(kManifestType, PutBlob(tmp.path(), text), text.size())}}}
              .dump());
      must_not_throw(tmp.path());
    });
  }
  SECTION("the config, stored under its new digest") {
    OciImage image(tmp.path());
    image.config["history"][0]["empty_layer"] = false;
    image.Write();
    json config = image.config;
    ForEachWrongType(config, [&](const json& changed) {
      image.config_override = changed.dump();
      image.Write();
      must_not_throw(tmp.path());
    });
  }
  CHECK(loads > 20);
}

TEST_CASE("random damage to manifest.json and index.json gives a Status", "[oci]") {
  TempDir tmp;
  std::mt19937 rng(20240611);
  auto fuzz = [&](const std::string& file, const std::string& load_path) {
    const std::string good = ReadFile(file);
    for (int i = 0; i < 150; ++i) {
      std::string bad = good;
      switch (rng() % 3) {
        case 0:
          bad.resize(rng() % bad.size());
          break;
        case 1:
          bad[rng() % bad.size()] = static_cast<char>(rng() % 256);
          break;
        case 2:
          bad.insert(rng() % bad.size(), 1, "[]{}\",:0\\"[rng() % 9]);
          break;
      }
      WriteFile(file, bad);
      Result<ImageSpec> result = Status::Ok();
      INFO(bad);
      REQUIRE_NOTHROW(result = LoadImage(load_path, {}));
    }
  };
  WriteDocker(tmp.Sub("docker"));
  fuzz(tmp.Sub("docker/manifest.json"), tmp.Sub("docker"));
  OciImage(tmp.Sub("oci")).Write();
  fuzz(tmp.Sub("oci/index.json"), tmp.Sub("oci"));
}

// Runs `body` in a child process and reports whether it finished within `limit`.
bool FinishesWithin(std::chrono::milliseconds limit, const std::function<void()>& body) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return false;
}

// A blocking open(2) of a FIFO waits for a writer that never comes; the file type is checked only
// after the open. The load runs in a child so that a regression fails here instead of hanging.
TEST_CASE("a FIFO named as a blob is refused, not waited on", "[oci]") {
  TempDir tmp;
  json manifest = WriteDocker(tmp.path());
  REQUIRE(::mkfifo(tmp.Sub("fifo").c_str(), 0600) == 0);
  manifest[0]["Layers"][0] = "fifo";
  WriteFile(tmp.Sub("manifest.json"), manifest.dump());
  CHECK(FinishesWithin(std::chrono::seconds(1), [&] {
    auto result = LoadImage(tmp.path(), {});
    ::_exit(result.ok() ? 1 : 0);
  }));
}

}  // namespace
}  // namespace layerfs
