#include "registry/index_artifact.h"

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/log.h"
#include "blob/sha256.h"

namespace layerfs {
namespace {

using json = nlohmann::json;

constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kEmptyType = "application/vnd.oci.empty.v1+json";

json Descriptor(const std::string& media_type, const Digest& digest, uint64_t size) {
  return {{"mediaType", media_type}, {"digest", digest.str()}, {"size", size}};
}

ArtifactBlob Blob(std::string media_type, std::string data,
                  std::map<std::string, std::string> annotations) {
  ArtifactBlob b;
  b.media_type = std::move(media_type);
  b.digest = Sha256::Of(data.data(), data.size());
  b.data = std::move(data);
  b.annotations = std::move(annotations);
  return b;
}

Result<std::string> ChunkDigests(const BlobRange& blob, uint64_t chunk_size) {
  std::string out;
  std::string buf(static_cast<size_t>(chunk_size), '\0');
  for (uint64_t at = 0; at < blob.length; at += chunk_size) {
    const size_t n = static_cast<size_t>(std::min(chunk_size, blob.length - at));
    LAYERFS_RETURN_IF_ERROR(PreadFully(blob.fd(), buf.data(), n, blob.offset + at, blob.name));
    Digest d = Sha256::Of(buf.data(), n);
    out.append(reinterpret_cast<const char*>(d.bytes().data()), d.bytes().size());
  }
  return out;
}

}  // namespace

Result<IndexArtifact> BuildIndexArtifact(const OpenedImage& image, uint64_t chunk_size) {
  const ImageSpec& spec = image.spec;
  if (!spec.manifest_digest) {
    return Status::Invalid(spec.location + ": has no image manifest for the indexes to refer to");
  }
  IndexArtifact a;
  json layers = json::array();
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const Layer& layer = image.layers[i];
    const LayerSpec& ls = spec.layers[i];
    // A layer served from an uncompressed copy has no index of its blob to publish.
    const bool in_place =
        layer.index.codec() != kIndexCodecNone || ls.compression == Compression::kNone;
    if (!in_place || !ls.blob_digest) continue;
    std::map<std::string, std::string> notes = {{kLayerAnnotation, ls.blob_digest->str()}};
    a.blobs.push_back(Blob(kLayerIndexMediaType, std::string(layer.index.bytes()), notes));
    LAYERFS_ASSIGN_OR_RETURN(std::string chunks, ChunkDigests(ls.blob, chunk_size));
    notes[kChunkSizeAnnotation] = std::to_string(chunk_size);
    a.blobs.push_back(Blob(kChunkDigestsMediaType, std::move(chunks), notes));
    ++a.layers;
  }
  for (const ArtifactBlob& b : a.blobs) {
    json d = Descriptor(b.media_type, b.digest, b.data.size());
    d["annotations"] = b.annotations;
    layers.push_back(std::move(d));
  }
  const std::string empty = "{}";
  json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kManifestType},
      {"artifactType", kIndexArtifactType},
      {"config", Descriptor(kEmptyType, Sha256::Of(empty.data(), empty.size()), empty.size())},
      {"layers", layers},
      {"subject", Descriptor(spec.manifest_media_type, *spec.manifest_digest, spec.manifest_size)},
      {"annotations", {{"io.layerfs.version", "1"}}},
  };
  a.manifest = manifest.dump();
  a.digest = Sha256::Of(a.manifest.data(), a.manifest.size());
  a.blobs.push_back(Blob(kEmptyType, empty, {}));
  return a;
}

Result<std::string> PublishIndexArtifact(RegistryClient& client, const ImageSpec& spec,
                                         const IndexArtifact& artifact) {
  for (const ArtifactBlob& b : artifact.blobs) {
    LAYERFS_RETURN_IF_ERROR(client.PushBlob(b.digest, b.data));
  }
  LAYERFS_ASSIGN_OR_RETURN(
      bool indexed, client.PushManifest(artifact.digest.str(), artifact.manifest, kManifestType));
  if (indexed) return std::string();

  // The tag schema: an index of the manifests that refer to the image, this one replacing an
  // index that layerfs published before.
  const std::string tag = "sha256-" + spec.manifest_digest->hex();
  LAYERFS_ASSIGN_OR_RETURN(std::optional<FetchedManifest> existing, client.FindManifest(tag));
  json list = json::array();
  if (existing) {
    json old = json::parse(existing->body, nullptr, false);
    if (old.is_object() && old.contains("manifests") && old["manifests"].is_array()) {
      for (const json& m : old["manifests"]) {
        if (m.is_object() && m.value("artifactType", "") == kIndexArtifactType) continue;
        list.push_back(m);
      }
    }
  }
  json ours = Descriptor(kManifestType, artifact.digest, artifact.manifest.size());
  ours["artifactType"] = kIndexArtifactType;
  list.push_back(std::move(ours));
  json index = {{"schemaVersion", 2}, {"mediaType", kIndexType}, {"manifests", list}};
  LAYERFS_RETURN_IF_ERROR(client.PushManifest(tag, index.dump(), kIndexType).status());
  return tag;
}

Result<std::string> PushIndexes(const ImageName& name, const RegistryOptions& options,
                                const OpenedImage& image, uint64_t chunk_size) {
  LAYERFS_ASSIGN_OR_RETURN(IndexArtifact artifact, BuildIndexArtifact(image, chunk_size));
  LAYERFS_ASSIGN_OR_RETURN(std::unique_ptr<RegistryClient> client,
                           RegistryClient::Connect(name, options));
  LAYERFS_ASSIGN_OR_RETURN(std::string tag, PublishIndexArtifact(*client, image.spec, artifact));
  uint64_t bytes = 0;
  for (const ArtifactBlob& b : artifact.blobs) bytes += b.data.size();
  return fmt::format(
      "{}: the indexes of {} of its {} layers ({} bytes) published as {}{}", name.str(),
      artifact.layers, image.layers.size(), bytes, artifact.digest.str(),
      tag.empty() ? " (the registry lists it as a referrer)" : ", listed under the tag " + tag);
}

namespace {

// The most a published index may take (a layer of a few million entries).
constexpr size_t kMaxPublishedIndex = 1u << 30;

// A published blob, from the cache if it was fetched before, else from the registry (checked
// against its digest before it is kept).
Result<std::string> PublishedBlob(RegistryClient& client, const json& desc, const std::string& path,
                                  size_t max_size) {
  if (!desc.is_object() || !desc.contains("digest") || !desc["digest"].is_string()) {
    return Status::Invalid("a descriptor without a digest");
  }
  LAYERFS_ASSIGN_OR_RETURN(Digest digest, Digest::Parse(desc["digest"].get<std::string>()));
  auto cached = ReadSmallFile(path, max_size);
  if (cached.ok()) return cached;
  LAYERFS_ASSIGN_OR_RETURN(std::string data, client.GetBlob(digest, max_size));
  if (Sha256::Of(data.data(), data.size()) != digest) {
    return Status::Corrupt("blob " + digest.str() + " does not match its digest");
  }
  LAYERFS_RETURN_IF_ERROR(WriteFileAtomic(path, data));
  return data;
}

Result<std::optional<std::string>> FindArtifact(RegistryClient& client, const Digest& subject) {
  LAYERFS_ASSIGN_OR_RETURN(std::optional<std::string> listing,
                           client.Referrers(subject, kIndexArtifactType));
  if (!listing) {
    LAYERFS_ASSIGN_OR_RETURN(std::optional<FetchedManifest> tagged,
                             client.FindManifest("sha256-" + subject.hex()));
    if (!tagged) return std::optional<std::string>();
    listing = std::move(tagged->body);
  }
  json index = json::parse(*listing, nullptr, false);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return Status::Invalid("the referrers of the image are not an image index");
  }
  std::optional<std::string> found;
  for (const json& m : index["manifests"]) {
    if (m.is_object() && m.value("artifactType", "") == kIndexArtifactType &&
        m.contains("digest") && m["digest"].is_string()) {
      found = m["digest"].get<std::string>();  // the last one listed: the newest
    }
  }
  return found;
}

}  // namespace

std::map<std::string, PublishedLayer> FindPublishedIndexes(RegistryClient& client,
                                                           const ImageSpec& spec,
                                                           const std::string& cache_dir) {
  std::map<std::string, PublishedLayer> out;
  if (!spec.manifest_digest) return out;
  auto artifact_digest = FindArtifact(client, *spec.manifest_digest);
  if (!artifact_digest.ok()) {
    LogWarning("{}: published indexes not used: {}", spec.location,
               artifact_digest.status().message());
    return out;
  }
  if (!*artifact_digest) {
    LogInfo("{}: no indexes published beside it; its layers are fetched whole", spec.location);
    return out;
  }
  auto manifest = client.GetManifest(**artifact_digest);
  if (!manifest.ok()) {
    LogWarning("{}: published indexes not used: {}", spec.location, manifest.status().message());
    return out;
  }
  json m = json::parse(manifest->body, nullptr, false);
  if (!m.is_object() || !m.contains("subject") || !m["subject"].is_object() ||
      m["subject"].value("digest", "") != spec.manifest_digest->str() || !m.contains("layers") ||
      !m["layers"].is_array()) {
    LogWarning("{}: the index artifact {} does not refer to this image; not used", spec.location,
               **artifact_digest);
    return out;
  }
  const std::string dir = cache_dir + "/remote-index/sha256";
  if (!MakeDirs(dir).ok()) return out;
  std::map<std::string, json> indexes, chunks;
  for (const json& d : m["layers"]) {
    if (!d.is_object() || !d.contains("annotations") || !d["annotations"].is_object()) continue;
    auto layer = Digest::Parse(d["annotations"].value(kLayerAnnotation, ""));
    if (!layer.ok()) continue;
    const std::string type = d.value("mediaType", "");
    if (type == kLayerIndexMediaType) indexes[layer->hex()] = d;
    if (type == kChunkDigestsMediaType) chunks[layer->hex()] = d;
  }
  for (const LayerSpec& layer : spec.layers) {
    if (!layer.blob_digest) continue;
    const std::string hex = layer.blob_digest->hex();
    if (indexes.count(hex) == 0 || chunks.count(hex) == 0) continue;
    PublishedLayer p;
    const std::string size_text = chunks[hex]["annotations"].value(kChunkSizeAnnotation, "");
    p.chunk_size = std::strtoull(size_text.c_str(), nullptr, 10);
    if (p.chunk_size < 4096 || p.chunk_size > (64u << 20)) {
      LogWarning("{}: published chunk size \"{}\" refused", layer.label, size_text);
      continue;
    }
    p.index_path = dir + "/" + hex + ".idx";
    auto index = PublishedBlob(client, indexes[hex], p.index_path, kMaxPublishedIndex);
    auto digests = PublishedBlob(client, chunks[hex],
                                 dir + "/" + hex + ".chunks-" + std::to_string(p.chunk_size),
                                 kMaxPublishedIndex);
    if (!index.ok() || !digests.ok()) {
      LogWarning("{}: published index not used: {}", layer.label,
                 (!index.ok() ? index.status() : digests.status()).message());
      continue;
    }
    p.chunk_digests = std::move(digests).value();
    out[hex] = std::move(p);
  }
  return out;
}

}  // namespace layerfs
