#include "registry/index_artifact.h"

#include <nlohmann/json.hpp>

#include "base/file_util.h"
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
    const bool in_place = layer.index.codec() != kIndexCodecNone ||
                          ls.compression == Compression::kNone;
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
  LAYERFS_ASSIGN_OR_RETURN(bool indexed,
                           client.PushManifest(artifact.digest.str(), artifact.manifest,
                                               kManifestType));
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

}  // namespace layerfs
