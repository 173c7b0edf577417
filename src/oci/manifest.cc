#include "oci/manifest.h"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>

#include "base/path.h"
#include "blob/sha256.h"

namespace layerfs {
namespace {

using json = nlohmann::json;

struct TooDeep {};

Result<json> ParseJson(const std::string& text, const std::string& name) {
  try {
    return json::parse(text, [](int depth, json::parse_event_t, json&) {
      if (static_cast<size_t>(depth) > kMaxJsonDepth) throw TooDeep();
      return true;
    });
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for numbers no double can hold ("1e400").
    std::string what = e.what();
    size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    return Status::Invalid(name + ": not valid JSON: " + what);
  } catch (const TooDeep&) {
    return Status::Invalid(name + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                           " levels");
  }
}

// Typed access to JSON fields with errors that say where: "index.json: manifests[0].digest".
class Doc {
 public:
  Doc(const json& value, std::string name, std::string path = "")
      : v_(value), name_(std::move(name)), path_(std::move(path)) {}

  const json& value() const { return v_; }
  std::string Where() const { return name_ + (path_.empty() ? "" : ": " + path_); }
  Status Error(const std::string& what) const { return Status::Invalid(Where() + " " + what); }

  bool Has(const char* key) const { return v_.is_object() && v_.contains(key); }
  Result<Doc> Get(const char* key) const {
    if (!v_.is_object()) return Error("is not an object");
    auto it = v_.find(key);
    if (it == v_.end()) return Doc(v_, name_, Join(key)).Error("is missing");
    return Doc(*it, name_, Join(key));
  }
  Result<std::string> String() const {
    if (!v_.is_string()) return Error("is not a string");
    return v_.get<std::string>();
  }
  Result<std::string> GetString(const char* key) const {
    LAYERFS_ASSIGN_OR_RETURN(Doc d, Get(key));
    return d.String();
  }
  std::string GetStringOr(const char* key, std::string fallback) const {
    if (!v_.is_object()) return fallback;
    auto it = v_.find(key);
    return it != v_.end() && it->is_string() ? it->get<std::string>() : fallback;
  }
  Result<std::vector<Doc>> Array() const {
    if (!v_.is_array()) return Error("is not an array");
    std::vector<Doc> out;
    for (size_t i = 0; i < v_.size(); ++i) {
      out.emplace_back(v_[i], name_, path_ + "[" + std::to_string(i) + "]");
    }
    return out;
  }
  Result<std::vector<Doc>> GetArray(const char* key) const {
    LAYERFS_ASSIGN_OR_RETURN(Doc d, Get(key));
    return d.Array();
  }
  Result<int64_t> Int() const {
    if (!v_.is_number_integer()) return Error("is not an integer");
    if (v_.is_number_unsigned() && v_.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Error("is out of range");
    }
    return v_.get<int64_t>();
  }

 private:
  std::string Join(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  const json& v_;
  std::string name_;
  std::string path_;
};

// An OCI content descriptor.
struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::string ref_name;  // org.opencontainers.image.ref.name (or containerd's image name)
  std::string os, arch, variant;
  std::string where;  // "index.json: manifests[0]": which descriptor of which file
};

Result<Descriptor> ParseDescriptor(const Doc& d) {
  Descriptor out;
  out.where = d.Where();
  out.media_type = d.GetStringOr("mediaType", "");
  LAYERFS_ASSIGN_OR_RETURN(std::string digest, d.GetString("digest"));
  auto parsed = Digest::Parse(digest);
  if (!parsed.ok()) return parsed.status().WithContext(d.Where());
  out.digest = *parsed;
  LAYERFS_ASSIGN_OR_RETURN(Doc size, d.Get("size"));
  LAYERFS_ASSIGN_OR_RETURN(out.size, size.Int());
  if (out.size < 0) return size.Error("is negative");
  if (d.Has("annotations")) {
    LAYERFS_ASSIGN_OR_RETURN(Doc a, d.Get("annotations"));
    out.ref_name = a.GetStringOr("org.opencontainers.image.ref.name", "");
    if (out.ref_name.empty()) out.ref_name = a.GetStringOr("io.containerd.image.name", "");
  }
  if (d.Has("platform")) {
    LAYERFS_ASSIGN_OR_RETURN(Doc p, d.Get("platform"));
    out.os = p.GetStringOr("os", "");
    out.arch = p.GetStringOr("architecture", "");
    out.variant = p.GetStringOr("variant", "");
  }
  return out;
}

std::string BlobPath(const Digest& digest) { return "blobs/sha256/" + digest.hex(); }

// A blob that a descriptor names and the image does not hold: which descriptor of which file.
Status MissingBlob(const ImageSource& source, const Descriptor& desc, const std::string& what) {
  return Status::NotFound(desc.where + " names the " + what + " " + desc.digest.str() +
                          ", which the image does not hold (no " +
                          source.Describe(BlobPath(desc.digest)) + ")");
}

// Reads a small blob named by a descriptor and checks its size and digest.
Result<std::string> ReadVerifiedBlob(const ImageSource& source, const Descriptor& desc,
                                     const std::string& what) {
  if (static_cast<uint64_t>(desc.size) > kMaxManifestBytes) {
    return Status::Invalid(what + " " + desc.digest.str() + ": too large (" +
                           std::to_string(desc.size) + " bytes)");
  }
  std::string path = BlobPath(desc.digest);
  auto read = source.ReadSmall(path, kMaxManifestBytes);
  if (!read.ok() && read.status().code() == ENOENT) return MissingBlob(source, desc, what);
  if (!read.ok()) return read.status();
  std::string data = std::move(read).value();
  if (data.size() != static_cast<uint64_t>(desc.size)) {
    return Status::Corrupt(source.Describe(path) + ": " + what + " is " +
                           std::to_string(data.size()) + " bytes, its descriptor says " +
                           std::to_string(desc.size));
  }
  if (Sha256::Of(data.data(), data.size()) != desc.digest) {
    return Status::Corrupt(source.Describe(path) + ": " + what + " does not match its digest");
  }
  return data;
}

bool IsIndexType(const std::string& t) {
  return t == "application/vnd.oci.image.index.v1+json" ||
         t == "application/vnd.docker.distribution.manifest.list.v2+json";
}

bool IsManifestType(const std::string& t) {
  return t.empty() || t == "application/vnd.oci.image.manifest.v1+json" ||
         t == "application/vnd.docker.distribution.manifest.v2+json";
}

Result<Compression> LayerCompression(const std::string& t) {
  static const struct {
    const char* type;
    Compression compression;
  } kTypes[] = {
      {"application/vnd.oci.image.layer.v1.tar", Compression::kNone},
      {"application/vnd.oci.image.layer.v1.tar+gzip", Compression::kGzip},
      {"application/vnd.oci.image.layer.v1.tar+zstd", Compression::kZstd},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar", Compression::kNone},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression::kGzip},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", Compression::kZstd},
      {"application/vnd.docker.image.rootfs.diff.tar", Compression::kNone},
      {"application/vnd.docker.image.rootfs.diff.tar.gzip", Compression::kGzip},
      {"application/vnd.docker.image.rootfs.diff.tar.zstd", Compression::kZstd},
      {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression::kGzip},
  };
  for (const auto& k : kTypes) {
    if (t == k.type) return k.compression;
  }
  return Status::Unsupported("media type \"" + Printable(t) + "\" is not a supported layer type");
}

std::string HostArch() {
  struct utsname u;
  if (::uname(&u) != 0) return "amd64";
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m == "i386" || m == "i686") return "386";
  if (m.rfind("armv", 0) == 0) return "arm";
  return m;  // ppc64le, s390x, riscv64 are spelt alike
}

// A platform as --platform spells it: OS/ARCH[/VARIANT]; by default this host's.
struct Platform {
  std::string os = "linux";
  std::string arch = HostArch();
  std::string variant;  // empty: any

  static Platform Parse(const std::string& text) {
    Platform p;
    std::vector<std::string_view> parts = SplitPath(text);
    if (parts.size() >= 1) p.os = parts[0];
    if (parts.size() >= 2) p.arch = parts[1];
    if (parts.size() >= 3) p.variant = parts[2];
    return p;
  }
  bool Matches(const std::string& os_, const std::string& arch_, const std::string& variant_) const {
    return os_ == os && arch_ == arch && (variant.empty() || variant_ == variant);
  }
};

std::string PlatformName(const std::string& os, const std::string& arch,
                         const std::string& variant) {
  return os + "/" + arch + (variant.empty() ? "" : "/" + variant);
}

// Sniffs the compression of a docker-save layer, which has no media type.
Result<Compression> SniffCompression(const BlobRange& blob) {
  unsigned char magic[4] = {};
  size_t n = static_cast<size_t>(std::min<uint64_t>(blob.length, sizeof(magic)));
  if (n > 0) {
    ssize_t r = ::pread(blob.fd(), magic, n, static_cast<off_t>(blob.offset));
    if (r < 0) return Status::FromErrno(errno, blob.name);
  }
  if (magic[0] == 0x1f && magic[1] == 0x8b) return Compression::kGzip;
  if (magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
    return Compression::kZstd;
  }
  return Compression::kNone;
}

// Reads config rootfs.diff_ids and the history lines of the layers (empty_layer ones skipped).
// Reads the image config: the layers' diff_ids and history. With an explicit `platform`, a config
// that states another one is refused (a single-platform image has nothing else to offer).
Status ReadConfig(const std::string& config, const std::string& name, const std::string& platform,
                  ImageSpec* image) {
  LAYERFS_ASSIGN_OR_RETURN(json j, ParseJson(config, name));
  Doc doc(j, name);
  const std::string os = doc.GetStringOr("os", ""), arch = doc.GetStringOr("architecture", "");
  const std::string variant = doc.GetStringOr("variant", "");
  if (!platform.empty() && !os.empty() && !arch.empty() &&
      !Platform::Parse(platform).Matches(os, arch, variant)) {
    return Status::NotFound(name + ": no image for platform " + platform +
                            " (--platform); the image is for " +
                            Printable(PlatformName(os, arch, variant)) + " only");
  }
  LAYERFS_ASSIGN_OR_RETURN(Doc rootfs, doc.Get("rootfs"));
  LAYERFS_ASSIGN_OR_RETURN(auto diff_ids, rootfs.GetArray("diff_ids"));
  if (diff_ids.size() != image->layers.size()) {
    return Status::Invalid(name + ": rootfs.diff_ids lists " + std::to_string(diff_ids.size()) +
                           " layers, the manifest " + std::to_string(image->layers.size()));
  }
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    LAYERFS_ASSIGN_OR_RETURN(std::string text, diff_ids[i].String());
    auto digest = Digest::Parse(text);
    if (!digest.ok()) return digest.status().WithContext(diff_ids[i].Where());
    image->layers[i].diff_id = *digest;
  }
  if (doc.Has("history") && j["history"].is_array()) {
    size_t layer = 0;
    for (const json& h : j["history"]) {
      if (!h.is_object()) continue;
      if (h.contains("empty_layer") && h["empty_layer"].is_boolean() && h["empty_layer"]) continue;
      if (layer >= image->layers.size()) break;
      if (h.contains("created_by") && h["created_by"].is_string()) {
        image->layers[layer].created_by = h["created_by"].get<std::string>();
      }
      ++layer;
    }
  }
  image->config = config;
  return Status::Ok();
}

Status CheckLayerCount(const std::string& manifest_name, size_t count) {
  if (count <= kMaxLayers) return Status::Ok();
  return Status::Unsupported(manifest_name + ": lists " + std::to_string(count) +
                             " layers; layerfs mounts images of at most " +
                             std::to_string(kMaxLayers));
}

// Messages number layers as `layerfs inspect` does: from 1, the bottom layer.
std::string LayerName(size_t index, size_t count) {
  return "layer " + std::to_string(index + 1) + " of " + std::to_string(count);
}

void LabelLayers(ImageSpec* image) {
  for (LayerSpec& layer : image->layers) {
    const std::optional<Digest>& d = layer.digest();
    layer.label = LayerName(layer.index, image->layers.size()) +
                  (d ? " (sha256:" + d->short_hex() + ")" : " (" + layer.path + ")");
  }
}

// A reference in the form registries and docker spell it: "name" means "name:latest", and the
// default registry and namespace ("docker.io/", "library/") and "localhost/" may be left out.
std::string CanonicalRef(std::string ref) {
  size_t slash = ref.rfind('/');
  size_t colon = ref.rfind(':');
  if (ref.find('@') == std::string::npos && (colon == std::string::npos ||
                                             (slash != std::string::npos && colon < slash))) {
    ref += ":latest";
  }
  for (const char* prefix : {"docker.io/", "index.docker.io/", "localhost/", "library/"}) {
    if (ref.rfind(prefix, 0) == 0) ref.erase(0, std::string_view(prefix).size());
  }
  if (ref.rfind("library/", 0) == 0) ref.erase(0, 8);
  return ref;
}

// Whether the image tagged `tag` is the one the user asked for with `ref`: the same reference,
// canonically, or `tag` ends with "/" + `ref` ("name:tag" finds "registry.example/team/name:tag").
bool DockerTagMatches(const std::string& tag, const std::string& ref) {
  if (tag.empty()) return false;
  std::string t = CanonicalRef(tag), r = CanonicalRef(ref);
  return t == r || (t.size() > r.size() && t.compare(t.size() - r.size(), r.size(), r) == 0 &&
                    t[t.size() - r.size() - 1] == '/');
}

Result<ImageSpec> LoadDocker(std::unique_ptr<ImageSource> source, const std::string& manifest,
                             const LoadOptions& options, std::string format) {
  ImageSpec image;
  image.location = source->location();
  image.format = std::move(format);
  std::string name = source->Describe(manifest);
  LAYERFS_ASSIGN_OR_RETURN(std::string text, source->ReadSmall(manifest, kMaxManifestBytes));
  LAYERFS_ASSIGN_OR_RETURN(json j, ParseJson(text, name));
  Doc doc(j, name);
  LAYERFS_ASSIGN_OR_RETURN(auto entries, doc.Array());
  if (entries.empty()) return Status::Invalid(name + ": lists no image");

  const Doc* chosen = nullptr;
  std::string tags;
  for (const Doc& e : entries) {
    if (e.Has("RepoTags") && e.value()["RepoTags"].is_array()) {
      for (const json& t : e.value()["RepoTags"]) {
        if (!t.is_string()) continue;
        std::string tag = t.get<std::string>();
        tags += (tags.empty() ? "" : ", ") + tag;
        if (!options.ref.empty() && chosen == nullptr && DockerTagMatches(tag, options.ref)) {
          chosen = &e;
          image.ref = tag;
        }
      }
    }
  }
  if (!options.ref.empty() && chosen == nullptr) {
    return Status::NotFound(name + ": no image tagged \"" + options.ref + "\" (tags: " +
                            (tags.empty() ? "none" : tags) + ")");
  }
  if (chosen == nullptr) {
    if (entries.size() > 1) {
      return Status::Invalid(name + ": holds " + std::to_string(entries.size()) +
                             " images; choose one with --ref TAG (tags: " + tags + ")");
    }
    chosen = &entries[0];
  }

  LAYERFS_ASSIGN_OR_RETURN(std::string config_path, chosen->GetString("Config"));
  LAYERFS_ASSIGN_OR_RETURN(auto layers, chosen->GetArray("Layers"));
  LAYERFS_RETURN_IF_ERROR(CheckLayerCount(name, layers.size()));
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerSpec layer;
    layer.index = i;
    LAYERFS_ASSIGN_OR_RETURN(layer.path, layers[i].String());
    image.layers.push_back(std::move(layer));
  }

  std::string config_name = source->Describe(config_path);
  LAYERFS_ASSIGN_OR_RETURN(std::string config, source->ReadSmall(config_path, kMaxManifestBytes));
  // The config is named by its digest ("<hex>.json", or "blobs/sha256/<hex>"): check it.
  {
    std::string base(SplitParent(config_path).second);
    if (base.size() == 69 && base.substr(64) == ".json") base.resize(64);
    auto named = Digest::ParseHex(base);
    if (named.ok() && Sha256::Of(config.data(), config.size()) != *named) {
      return Status::Corrupt(config_name + ": does not match the digest in its name");
    }
  }
  LAYERFS_RETURN_IF_ERROR(ReadConfig(config, config_name, options.platform, &image));

  for (LayerSpec& layer : image.layers) {
    auto blob = source->Open(layer.path);
    if (!blob.ok()) {
      return blob.status().WithContext(LayerName(layer.index, image.layers.size()));
    }
    layer.blob = std::move(blob).value();
    LAYERFS_ASSIGN_OR_RETURN(layer.compression, SniffCompression(layer.blob));
  }
  LabelLayers(&image);
  image.source = std::move(source);
  return image;
}

std::string DescribeChoices(const std::vector<Descriptor>& descs, bool by_platform = false) {
  std::string out;
  for (const Descriptor& d : descs) {
    if (!out.empty()) out += ", ";
    if (!d.ref_name.empty() && !(by_platform && !d.os.empty())) {
      out += d.ref_name;
    } else if (!d.os.empty()) {
      out += PlatformName(d.os, d.arch, d.variant);
    } else {
      out += "sha256:" + d.digest.short_hex();
    }
  }
  return out;
}

// Picks the image manifest from an index (following nested indexes), by ref, then platform.
// `picked_ref` receives the ref.name of the entry picked in the top-level index (which may name an
// index whose manifest has no name of its own).
Result<Descriptor> SelectManifest(const ImageSource& source, const json& index,
                                  const std::string& name, const LoadOptions& options,
                                  bool use_ref, int depth, std::set<std::string>* seen,
                                  std::string* picked_ref) {
  Doc doc(index, name);
  LAYERFS_ASSIGN_OR_RETURN(auto list, doc.GetArray("manifests"));
  std::vector<Descriptor> all;
  for (const Doc& d : list) {
    LAYERFS_ASSIGN_OR_RETURN(Descriptor desc, ParseDescriptor(d));
    all.push_back(std::move(desc));
  }
  if (all.empty()) return Status::Invalid(name + ": lists no manifest");

  std::vector<Descriptor> candidates;
  if (use_ref && !options.ref.empty()) {
    for (const Descriptor& d : all) {
      if (d.ref_name == options.ref || DockerTagMatches(d.ref_name, options.ref)) {
        candidates.push_back(d);
      }
    }
    if (candidates.empty()) {
      return Status::NotFound(name + ": no manifest named \"" + options.ref + "\" (names: " +
                              DescribeChoices(all) + ")");
    }
  } else {
    candidates = all;
  }
  // The platform decides among several candidates; an explicit --platform also checks a single
  // one that states its platform.
  if (candidates.size() > 1 || (!options.platform.empty() && !candidates[0].os.empty())) {
    const Platform want = Platform::Parse(options.platform);
    std::vector<Descriptor> matching;
    for (const Descriptor& d : candidates) {
      if (want.Matches(d.os, d.arch, d.variant)) matching.push_back(d);
    }
    if (matching.empty() && (candidates.size() == 1 || !options.platform.empty())) {
      return Status::NotFound(name + ": no manifest for platform " + options.platform +
                              " (--platform); the platforms it has: " +
                              DescribeChoices(candidates, true));
    }
    if (matching.size() != 1) {
      return Status::Invalid(name + ": lists " + std::to_string(candidates.size()) +
                             " manifests; choose one with --ref NAME or --platform OS/ARCH (" +
                             DescribeChoices(candidates) + ")");
    }
    candidates = matching;
  }
  const Descriptor& chosen = candidates[0];
  if (depth == 0) *picked_ref = chosen.ref_name;
  if (IsIndexType(chosen.media_type)) {
    if (depth >= 8) return Status::Invalid(name + ": image indexes nested too deeply");
    if (!seen->insert(chosen.digest.hex()).second) {
      return Status::Invalid(name + ": image index refers to itself");
    }
    LAYERFS_ASSIGN_OR_RETURN(std::string nested, ReadVerifiedBlob(source, chosen, "image index"));
    std::string nested_name = source.Describe(BlobPath(chosen.digest));
    LAYERFS_ASSIGN_OR_RETURN(json j, ParseJson(nested, nested_name));
    return SelectManifest(source, j, nested_name, options, false, depth + 1, seen, picked_ref);
  }
  if (!IsManifestType(chosen.media_type)) {
    return Status::Unsupported(name + ": manifest media type \"" + Printable(chosen.media_type) +
                               "\" is not supported");
  }
  return chosen;
}

Result<ImageSpec> LoadOci(std::unique_ptr<ImageSource> source, const LoadOptions& options,
                          std::string format) {
  ImageSpec image;
  image.location = source->location();
  image.format = std::move(format);

  {
    std::string name = source->Describe("oci-layout");
    LAYERFS_ASSIGN_OR_RETURN(std::string text, source->ReadSmall("oci-layout", 64 << 10));
    LAYERFS_ASSIGN_OR_RETURN(json j, ParseJson(text, name));
    LAYERFS_ASSIGN_OR_RETURN(std::string version, Doc(j, name).GetString("imageLayoutVersion"));
    if (version.rfind("1.", 0) != 0) {
      return Status::Unsupported(name + ": image layout version " + Printable(version) +
                                 " is not supported");
    }
  }

  std::string index_name = source->Describe("index.json");
  LAYERFS_ASSIGN_OR_RETURN(std::string index_text, source->ReadSmall("index.json",
                                                                      kMaxManifestBytes));
  LAYERFS_ASSIGN_OR_RETURN(json index, ParseJson(index_text, index_name));
  std::set<std::string> seen;
  LAYERFS_ASSIGN_OR_RETURN(Descriptor manifest_desc,
                           SelectManifest(*source, index, index_name, options, true, 0, &seen,
                                          &image.ref));

  std::string manifest_name = source->Describe(BlobPath(manifest_desc.digest));
  LAYERFS_ASSIGN_OR_RETURN(std::string manifest_text,
                           ReadVerifiedBlob(*source, manifest_desc, "manifest"));
  LAYERFS_ASSIGN_OR_RETURN(json manifest, ParseJson(manifest_text, manifest_name));
  Doc doc(manifest, manifest_name);
  std::string media_type = doc.GetStringOr("mediaType", "");
  if (IsIndexType(media_type) || !IsManifestType(media_type)) {
    return Status::Unsupported(manifest_name + ": media type \"" + Printable(media_type) +
                               "\" is not an image manifest");
  }
  image.manifest_digest = manifest_desc.digest;
  image.manifest_size = manifest_text.size();
  image.manifest_media_type = !media_type.empty()               ? media_type
                              : !manifest_desc.media_type.empty() ? manifest_desc.media_type
                                                                  : "application/vnd.oci.image.manifest.v1+json";
  LAYERFS_ASSIGN_OR_RETURN(Doc config_doc, doc.Get("config"));
  LAYERFS_ASSIGN_OR_RETURN(Descriptor config_desc, ParseDescriptor(config_doc));
  LAYERFS_ASSIGN_OR_RETURN(auto layers, doc.GetArray("layers"));
  LAYERFS_RETURN_IF_ERROR(CheckLayerCount(manifest_name, layers.size()));
  for (size_t i = 0; i < layers.size(); ++i) {
    LAYERFS_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(layers[i]));
    LayerSpec layer;
    layer.index = i;
    layer.path = BlobPath(d.digest);
    layer.media_type = d.media_type;
    auto compression = LayerCompression(d.media_type);
    if (!compression.ok()) {
      return compression.status().WithContext(manifest_name + ": " + LayerName(i, layers.size()));
    }
    layer.compression = *compression;
    layer.blob_digest = d.digest;
    auto blob = source->Open(layer.path);
    if (!blob.ok() && blob.status().code() == ENOENT) {
      return MissingBlob(*source, d, "blob of " + LayerName(i, layers.size()));
    }
    if (!blob.ok()) return blob.status().WithContext(LayerName(i, layers.size()));
    layer.blob = std::move(blob).value();
    if (layer.blob.length != static_cast<uint64_t>(d.size)) {
      return Status::Corrupt(layer.blob.name + ": " + LayerName(i, layers.size()) + " is " +
                             std::to_string(layer.blob.length) + " bytes, its descriptor says " +
                             std::to_string(d.size));
    }
    image.layers.push_back(std::move(layer));
  }
  std::string config_name = source->Describe(BlobPath(config_desc.digest));
  LAYERFS_ASSIGN_OR_RETURN(std::string config, ReadVerifiedBlob(*source, config_desc, "config"));
  // A platform the index stated was checked there; one it did not state is checked in the config.
  LAYERFS_RETURN_IF_ERROR(ReadConfig(config, config_name,
                                     manifest_desc.os.empty() ? options.platform : "", &image));
  LabelLayers(&image);
  image.source = std::move(source);
  return image;
}

Result<ImageSpec> LoadFromSource(std::unique_ptr<ImageSource> source, const LoadOptions& options,
                                 const std::string& kind) {
  if (source->Exists("oci-layout") || source->Exists("index.json")) {
    return LoadOci(std::move(source), options, "oci-" + kind);
  }
  if (source->Exists("manifest.json")) {
    return LoadDocker(std::move(source), "manifest.json", options, "docker-" + kind);
  }
  return Status::Invalid(source->location() +
                         ": not an image: no manifest.json (docker save) or oci-layout and "
                         "index.json (OCI image layout)");
}

}  // namespace

Result<ImageSpec> LoadOciImage(std::unique_ptr<ImageSource> source, const LoadOptions& options,
                               std::string format) {
  return LoadOci(std::move(source), options, std::move(format));
}

Result<ImageSpec> LoadImage(const std::string& path, const LoadOptions& options) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "image " + path);
  if (S_ISDIR(st.st_mode)) {
    LAYERFS_ASSIGN_OR_RETURN(auto source, ImageSource::OpenDirectory(path));
    return LoadFromSource(std::move(source), options, "dir");
  }
  if (!S_ISREG(st.st_mode)) return Status::Invalid(path + ": not a file or directory");

  // A manifest.json or index.json names the directory it is in.
  auto [dir_part, base] = SplitParent(path);
  std::string dir = path.find('/') == std::string::npos ? "." : std::string(dir_part);
  if (dir.empty()) dir = "/";
  if (base == "manifest.json" || base == "index.json") {
    LAYERFS_ASSIGN_OR_RETURN(auto source, ImageSource::OpenDirectory(dir));
    if (base == "index.json") return LoadOci(std::move(source), options, "oci-dir");
    return LoadDocker(std::move(source), std::string(base), options, "docker-dir");
  }
  LAYERFS_ASSIGN_OR_RETURN(auto source, ImageSource::OpenArchive(path));
  return LoadFromSource(std::move(source), options, "archive");
}

}  // namespace layerfs
