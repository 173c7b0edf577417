#include "fuzz/fuzz_targets.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>

#include "base/hash.h"
#include "base/unique_fd.h"
#include "blob/checkpoints.h"
#include "blob/compressed_source.h"
#include "blob/sha256.h"
#include "blob/span_cache.h"
#include "index/index_builder.h"
#include "index/layer_data.h"
#include "index/layer_index.h"
#include "index/layer_store.h"
#include "oci/manifest.h"
#include "tar/tar_reader.h"
#include "tree/merged_tree.h"

namespace layerfs::fuzz {
namespace {

// Entries walked per input, so that one large input cannot make a run slow.
constexpr uint32_t kMaxWalk = 20000;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "layerfs fuzz invariant broken: %s\n", what.c_str());
  std::abort();
}

UniqueFd MemFile(const void* data, size_t size) {
  UniqueFd fd(::memfd_create("layerfs-fuzz", MFD_CLOEXEC));
  if (!fd) Fail("memfd_create");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd.get(), p, size);
    if (n <= 0) Fail("write to memfd");
    p += n;
    size -= static_cast<size_t>(n);
  }
  return fd;
}

Compression Sniff(const uint8_t* data, size_t size) {
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) return Compression::kGzip;
  if (size >= 4 && data[0] == 0x28 && data[1] == 0xb5 && data[2] == 0x2f && data[3] == 0xfd) {
    return Compression::kZstd;
  }
  return Compression::kNone;
}

// Everything a mount would do with a validated index, short of FUSE: names, paths, lookups,
// attributes, xattrs, link targets, read plans, and the merged tree.
void Exercise(const std::vector<Layer>& layers, bool built_here) {
  const LayerIndex& ix = layers[0].index;
  const uint32_t n = std::min(ix.entry_count(), kMaxWalk);
  std::vector<ReadSegment> plan;
  for (uint32_t i = 0; i < n; ++i) {
    const IndexEntry& e = ix.entry(i);
    std::string path = ix.PathOf(i);
    uint32_t found = ix.FindPath(path);
    // The builder never writes two entries of one name in one directory.
    if (built_here && found != i) Fail("entry " + std::to_string(i) + " not found by its path");
    for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
      (void)ix.xattr_name(e, k).size();
      (void)ix.xattr_value(e, k).size();
    }
    switch (static_cast<EntryType>(e.type)) {
      case EntryType::kSymlink:
        (void)ix.link_target(e).size();
        break;
      case EntryType::kHardlink:
        if (e.flags & kFlagLowerLink) (void)ix.link_target(e).size();
        break;
      case EntryType::kRegular:
        plan.clear();
        PlanRead(layers[0], e, 0, 1 << 20, &plan);
        plan.clear();
        if (e.size > 0) PlanRead(layers[0], e, e.size - 1, 4096, &plan);
        break;
      default:
        break;
    }
  }
  auto tree = MergedTree::Build(layers);
  if (!tree.ok()) {
    if (built_here) Fail("merged tree of a built index: " + tree.status().message());
    return;
  }
  const uint32_t nodes = std::min(tree->node_count(), kMaxWalk);
  for (uint32_t node = 0; node < nodes; ++node) {
    std::string path = tree->PathOf(node);
    (void)tree->LookupPath(path);
  }
}

}  // namespace

void Init() { InitArchiveLocale(); }

int TarIndex(const uint8_t* data, size_t size) {
  UniqueFd blob = MemFile(data, size);
  Compression compression = Sniff(data, size);
  UniqueFd copy;
  TarReadOptions options;
  options.compression = compression;
  if (compression != Compression::kNone) {
    copy = MemFile("", 0);
    options.copy_fd = copy.get();
  }
  CheckpointList checkpoints;
  options.checkpoints = &checkpoints;
  options.span = kMinSpan;
  IndexBuilder builder;
  auto stats = ReadTar(blob.get(), 0, size, "fuzz.tar", options,
                       [&](const TarEntry& e) { return builder.Add(e); });
  if (!stats.ok()) return 0;
  IndexBuilder::InPlace in_place{&checkpoints, Digest(), size};
  auto bytes = builder.Finish(Digest(), stats->tar_bytes,
                              compression == Compression::kNone ? nullptr : &in_place);
  if (!bytes.ok()) return 0;
  auto index = LayerIndex::FromBytes(std::move(bytes).value());
  if (!index.ok())
    Fail("an index the builder wrote does not validate: " + index.status().message());
  std::vector<Layer> layers(1);
  layers[0].index = std::move(index).value();
  auto file = FileSource::Open(std::make_shared<UniqueFd>(std::move(blob)), 0, size, "fuzz.blob");
  if (compression == Compression::kNone) {
    layers[0].data = file.value();
  } else {
    // Read in place through the checkpoints, each byte compared with the decompressed copy.
    auto copy_source =
        FileSource::Open(std::make_shared<UniqueFd>(std::move(copy)), 0, stats->tar_bytes, "copy")
            .value();
    layers[0].data = std::make_shared<CompressedSource>(
        file.value(), layers[0].index.checkpoints(), stats->tar_bytes,
        std::make_shared<SpanCache>(1u << 20), DefaultInflater());
    const uint64_t n = std::min<uint64_t>(stats->tar_bytes, 16u << 20);
    std::string want(n, '\0'), got(n, '\0');
    Status a = copy_source->ReadAt(0, want.data(), n);
    Status b = layers[0].data->ReadAt(0, got.data(), n);
    if (!a.ok() || !b.ok() || want != got) {
      Fail("reading through the checkpoints differs from the decompressed stream: " + b.message());
    }
  }
  Exercise(layers, true);
  return 0;
}

int LayerIndexBytes(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  if (bytes.size() >= sizeof(IndexHeader)) {
    // The checksum would stop nearly every input at the first check: make it match.
    constexpr size_t kField = offsetof(IndexHeader, checksum);
    std::memset(bytes.data() + kField, 0, sizeof(uint64_t));
    uint64_t sum =
        Hash64Concat(bytes.data(), sizeof(IndexHeader), bytes.data() + sizeof(IndexHeader),
                     bytes.size() - sizeof(IndexHeader));
    std::memcpy(bytes.data() + kField, &sum, sizeof(sum));
  }
  auto index = LayerIndex::FromBytes(std::move(bytes));
  if (!index.ok()) return 0;
  std::vector<Layer> layers(1);
  layers[0].index = std::move(index).value();
  // The tar the index describes: zeros of the size its header states (bounded), in memory; or,
  // for an index with checkpoints, a compressed blob of zeros that no checkpoint decodes.
  const uint64_t tar_size = std::min<uint64_t>(layers[0].index.tar_size(), 1 << 20);
  const bool in_place = layers[0].index.codec() != kIndexCodecNone;
  const uint64_t stored =
      in_place ? std::min<uint64_t>(layers[0].index.blob_size(), 1 << 20) : tar_size;
  auto file = FileSource::Open(
                  std::make_shared<UniqueFd>(MemFile(std::string(stored, '\0').data(), stored)), 0,
                  in_place ? layers[0].index.blob_size() : layers[0].index.tar_size(), "fuzz.tar")
                  .value();
  if (in_place) {
    layers[0].data = std::make_shared<CompressedSource>(
        file, layers[0].index.checkpoints(), layers[0].index.tar_size(),
        std::make_shared<SpanCache>(1u << 20), DefaultInflater());
  } else {
    layers[0].data = file;
  }
  Exercise(layers, false);
  return 0;
}

namespace {

using json = nlohmann::json;

// A one-block ustar header (mode 0644, owner 0:0) with its checksum.
std::string Header(std::string_view name, char type, size_t size) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(h.data() + 100, 8, "%07o", 0644);
  std::snprintf(h.data() + 108, 8, "%07o", 0);
  std::snprintf(h.data() + 116, 8, "%07o", 0);
  std::snprintf(h.data() + 124, 12, "%011zo", size);
  std::snprintf(h.data() + 136, 12, "%011o", 1700000000);
  std::memset(h.data() + 148, ' ', 8);
  h[156] = type;
  std::memcpy(h.data() + 257,
              "ustar\0"
              "00",
              8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  return h;
}

std::string Padded(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

// The valid image every mode starts from: one layer holding the file "a".
struct TinyImage {
  std::string layer = Header("a", '0', 2) + Padded("A\n") + std::string(1024, '\0');
  Digest layer_digest = Sha256::Of(layer.data(), layer.size());
  std::string config = json{{"architecture", "amd64"},
                            {"os", "linux"},
                            {"rootfs", {{"type", "layers"}, {"diff_ids", {layer_digest.str()}}}},
                            {"history", {{{"created_by", "fuzz"}}}}}
                           .dump();

  static json Descriptor(const char* type, const std::string& blob) {
    return {{"mediaType", type},
            {"digest", Sha256::Of(blob.data(), blob.size()).str()},
            {"size", blob.size()}};
  }
  std::string Manifest(const std::string& config_blob) const {
    return json{{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                {"config", Descriptor("application/vnd.oci.image.config.v1+json", config_blob)},
                {"layers", {Descriptor("application/vnd.oci.image.layer.v1.tar", layer)}}}
        .dump();
  }
  std::string Index(const std::string& manifest) const {
    json d = Descriptor("application/vnd.oci.image.manifest.v1+json", manifest);
    d["annotations"] = {{"org.opencontainers.image.ref.name", "latest"}};
    return json{{"schemaVersion", 2}, {"manifests", {d}}}.dump();
  }
  std::string DockerManifest() const {
    return json::array({{{"Config", "config.json"},
                         {"RepoTags", {"fuzz:latest"}},
                         {"Layers", {"layer.tar"}}}})
        .dump();
  }
};

const TinyImage& Tiny() {
  static const TinyImage* tiny = new TinyImage();
  return *tiny;
}

void Put(const std::filesystem::path& path, std::string_view data) {
  std::filesystem::create_directories(path.parent_path());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) Fail("create " + path.string());
  if (!data.empty() && std::fwrite(data.data(), 1, data.size(), f) != data.size()) {
    Fail("write " + path.string());
  }
  std::fclose(f);
}

void PutBlob(const std::filesystem::path& dir, std::string_view data) {
  Put(dir / "blobs/sha256" / Sha256::Of(data.data(), data.size()).hex(), data);
}

// A per-process directory, removed at exit.
const std::filesystem::path& WorkDir() {
  static const std::filesystem::path* dir = [] {
    char tmpl[] = "/tmp/layerfs-fuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) Fail("mkdtemp");
    auto* p = new std::filesystem::path(tmpl);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(WorkDir(), ec);
    });
    return p;
  }();
  return *dir;
}

// Writes the image of `mode` with `doc` in its role; returns what LoadImage is given.
std::filesystem::path WriteImage(uint8_t mode, std::string_view doc) {
  const TinyImage& t = Tiny();
  const std::filesystem::path dir = WorkDir() / "image";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  if (mode == 1) {
    Put(dir / "manifest.json", doc);
    Put(dir / "config.json", t.config);
    Put(dir / "layer.tar", t.layer);
    return dir;
  }
  if (mode == 4) {
    Put(dir / "image.tar", doc);
    return dir / "image.tar";
  }
  Put(dir / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  PutBlob(dir, t.layer);
  std::string config = mode == 3 ? std::string(doc) : t.config;
  PutBlob(dir, config);
  std::string manifest = mode == 2 ? std::string(doc) : t.Manifest(config);
  PutBlob(dir, manifest);
  Put(dir / "index.json", mode == 0 ? std::string(doc) : t.Index(manifest));
  return dir;
}

// An uncompressed tar of the files (name, content), for mode 4.
std::string TarOf(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  for (const auto& [name, content] : files)
    out += Header(name, '0', content.size()) + Padded(content);
  return out + std::string(1024, '\0');
}

}  // namespace

int Manifest(const uint8_t* data, size_t size) {
  if (size == 0 || size > kMaxManifestBytes) return 0;
  const uint8_t mode = data[0] % 5;
  std::string_view doc(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::filesystem::path path = WriteImage(mode, doc);
  auto image = LoadImage(path.string(), LoadOptions{});
  if (image.ok()) {
    for (const LayerSpec& layer : image->layers) {
      if (layer.blob.file == nullptr) Fail("a loaded layer without a blob");
    }
  }
  return 0;
}

std::vector<std::string> ManifestSeeds() {
  const TinyImage& t = Tiny();
  const std::string manifest = t.Manifest(t.config);
  const std::string sha = "blobs/sha256/";
  auto hex = [](const std::string& s) { return Sha256::Of(s.data(), s.size()).hex(); };
  std::vector<std::string> seeds = {
      std::string(1, '\0') + t.Index(manifest),
      std::string(1, '\1') + t.DockerManifest(),
      std::string(1, '\2') + manifest,
      std::string(1, '\3') + t.config,
      std::string(1, '\4') + TarOf({{"manifest.json", t.DockerManifest()},
                                    {"config.json", t.config},
                                    {"layer.tar", t.layer}}),
      std::string(1, '\4') + TarOf({{"oci-layout", R"({"imageLayoutVersion":"1.0.0"})"},
                                    {"index.json", t.Index(manifest)},
                                    {sha + hex(manifest), manifest},
                                    {sha + hex(t.config), t.config},
                                    {sha + hex(t.layer), t.layer}}),
  };
  return seeds;
}

}  // namespace layerfs::fuzz
