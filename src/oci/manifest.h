// Reading an image's manifests: which layer blobs, in which order, with which digests.
//
// Three forms are understood:
//  - a `docker save` / `podman save` layout (manifest.json + config + layer tars), as a directory
//    or as the archive itself;
//  - an OCI image layout (oci-layout, index.json, blobs/sha256/...), as a directory or archive;
// following index -> (nested index ->) manifest -> config + layers.
#ifndef LAYERFS_OCI_MANIFEST_H_
#define LAYERFS_OCI_MANIFEST_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blob/blob_range.h"
#include "blob/byte_source.h"
#include "layerfs/digest.h"
#include "layerfs/status.h"
#include "oci/image_source.h"
#include "tar/tar_reader.h"

namespace layerfs {

struct LayerSpec {
  size_t index = 0;          // 0 is the bottom layer
  std::string path;          // the blob's path inside the image
  BlobRange blob;
  std::string media_type;    // empty for docker-save layers, which have none
  Compression compression = Compression::kNone;
  std::optional<Digest> blob_digest;  // digest of the blob as stored, when the image states it
  std::optional<Digest> diff_id;      // digest of the uncompressed tar (config rootfs.diff_ids)
  std::string created_by;             // the config's history line for this layer
  std::string label;  // how messages name the layer, from 1 at the bottom: "layer 2 of 5 (sha256:ab12…)"
  // A registry layer read lazily through an index published beside its image: the index file,
  // and the blob as a source whose chunks are fetched as they are read. `blob` then holds no
  // bytes (reads of it fail).
  std::string published_index;
  std::shared_ptr<const ByteSource> remote;

  // The digest the layer is named by, in messages and in `layerfs inspect`: the blob's as stored,
  // else (docker-save layers, which state none) its diff_id, which is the same for a plain tar.
  const std::optional<Digest>& digest() const { return blob_digest ? blob_digest : diff_id; }
};

// The most layers an image may have (the merged tree numbers layers in 16 bits). An image with
// more is refused before any of its blobs is opened.
inline constexpr size_t kMaxLayers = 65535;

struct ImageSpec {
  std::string location;  // as the user named it
  std::string format;    // "docker-dir", "docker-archive", "oci-dir", "oci-archive", "registry"
  std::string ref;       // the reference picked, if any
  std::string config;    // the image config JSON
  // The image manifest picked (OCI layouts and registries; docker-save images have none).
  std::optional<Digest> manifest_digest;
  uint64_t manifest_size = 0;
  std::string manifest_media_type;
  std::vector<LayerSpec> layers;  // bottom to top
  std::unique_ptr<ImageSource> source;
  // Fetches in the background what is not local yet (the layers read lazily from a registry),
  // demand reads first; empty when there is nothing to fetch.
  std::function<void()> start_background;
  // Registry images: the layers that have an index published beside the image (when looked for).
  size_t published_indexes = 0;
};

struct LoadOptions {
  std::string ref;       // --ref: the manifest to pick (OCI ref.name annotation or docker RepoTag)
  std::string platform;  // "os/arch[/variant]" for multi-platform indexes; default: this host
};

// Opens the image named by `path`: a manifest.json or index.json file, an image directory, or
// an image archive; reads its manifests and opens every layer blob.
Result<ImageSpec> LoadImage(const std::string& path, const LoadOptions& options);

// Reads an image laid out as an OCI image layout (oci-layout, index.json, blobs/sha256/…) by
// `source`, wherever its files are; `format` is what ImageSpec::format says.
Result<ImageSpec> LoadOciImage(std::unique_ptr<ImageSource> source, const LoadOptions& options,
                               std::string format);

// Upper bounds on the JSON documents read, so that a hostile image cannot exhaust memory.
inline constexpr size_t kMaxManifestBytes = 16 << 20;
inline constexpr size_t kMaxJsonDepth = 64;

}  // namespace layerfs

#endif  // LAYERFS_OCI_MANIFEST_H_
