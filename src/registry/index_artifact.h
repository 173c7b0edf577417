// The layer indexes of an image, published to its registry as an OCI artifact beside it.
//
// The artifact is an OCI image manifest (artifactType kIndexArtifactType) whose `subject` is the
// image manifest and whose layers are, for each layer of the image that is read in place from its
// blob, two blobs annotated with that layer blob's digest (kLayerAnnotation):
//   - kLayerIndexMediaType: the layer's index file, exactly as layerfs keeps it in its cache
//     (README, "On-disk formats"), checkpoints included;
//   - kChunkDigestsMediaType: the SHA-256 of every kChunkSizeAnnotation bytes of the layer blob,
//     32 bytes each, in order (the last chunk may be shorter), for checking what is fetched of it.
// It is found through the referrers API where the registry has one, else through the tag schema
// of the OCI distribution spec 1.1: the tag `sha256-<hex of the image manifest digest>` names an
// image index listing the manifests that refer to it.
#ifndef LAYERFS_REGISTRY_INDEX_ARTIFACT_H_
#define LAYERFS_REGISTRY_INDEX_ARTIFACT_H_

#include <map>
#include <string>
#include <vector>

#include "image/opened_image.h"
#include "registry/image_name.h"
#include "registry/registry_client.h"

namespace layerfs {

inline constexpr const char* kIndexArtifactType = "application/vnd.layerfs.index.v1";
inline constexpr const char* kLayerIndexMediaType = "application/vnd.layerfs.layer-index.v2";
inline constexpr const char* kChunkDigestsMediaType = "application/vnd.layerfs.chunk-digests.v1";
inline constexpr const char* kLayerAnnotation = "io.layerfs.layer";
inline constexpr const char* kChunkSizeAnnotation = "io.layerfs.chunk-size";
inline constexpr uint64_t kDefaultChunkSize = 256 << 10;

struct ArtifactBlob {
  std::string media_type;
  std::string data;
  Digest digest;
  std::map<std::string, std::string> annotations;
};

struct IndexArtifact {
  std::string manifest;  // JSON
  Digest digest;         // of `manifest`
  std::vector<ArtifactBlob> blobs;
  size_t layers = 0;  // layers with an index in it
};

// The artifact for an opened image (its layers loaded, so their indexes exist).
Result<IndexArtifact> BuildIndexArtifact(const OpenedImage& image, uint64_t chunk_size);

// Pushes the artifact's blobs and manifest, then lists it under the referrers tag unless the
// registry indexed its subject itself. Returns the tag it listed it under ("" for none).
Result<std::string> PublishIndexArtifact(RegistryClient& client, const ImageSpec& spec,
                                         const IndexArtifact& artifact);

// Builds the artifact of an opened registry image and publishes it; returns the line that says so
// ("docker://…: the indexes of N of its M layers (B bytes) published as sha256:…, …").
Result<std::string> PushIndexes(const ImageName& name, const RegistryOptions& options,
                                const OpenedImage& image, uint64_t chunk_size);

struct PublishedLayer {
  std::string index_path;  // the layer's published index, kept in the cache
  uint64_t chunk_size = 0;
  std::string chunk_digests;
};

// The indexes published beside the image, by the hex digest of each layer blob they are for.
// Empty where none are published; an artifact or blob that fails its checks is skipped with a
// warning (those layers are then fetched whole). Indexes are kept in
// CACHE/remote-index/sha256/<layer blob hex>.idx, chunk digests beside them (.chunks-SIZE).
std::map<std::string, PublishedLayer> FindPublishedIndexes(RegistryClient& client,
                                                           const ImageSpec& spec,
                                                           const std::string& cache_dir);

}  // namespace layerfs

#endif  // LAYERFS_REGISTRY_INDEX_ARTIFACT_H_
