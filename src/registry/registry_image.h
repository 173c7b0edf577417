// Images in a registry (docker://…), read through the same manifest code as an OCI layout.
//
// The registry is shown to LoadOciImage as an OCI image layout: `index.json` names the manifest
// the tag (or digest) resolves to, and `blobs/sha256/<hex>` are the registry's manifests and
// blobs. Manifests and configs are fetched when read, and checked against their digests there.
// A layer blob is fetched whole into the cache (CACHE/blobs/sha256/<hex>, checked against its
// digest before it takes that name), once for every image and mount that uses it; the layer is
// then served in place from that file like a layer of a local OCI layout.
#ifndef LAYERFS_REGISTRY_REGISTRY_IMAGE_H_
#define LAYERFS_REGISTRY_REGISTRY_IMAGE_H_

#include <string>

#include "oci/manifest.h"
#include "registry/image_name.h"
#include "registry/registry_client.h"

namespace layerfs {

Result<ImageSpec> LoadRegistryImage(const ImageName& name, const LoadOptions& options,
                                    const RegistryOptions& registry, const std::string& cache_dir);

// Where the cache keeps a fetched blob.
std::string FetchedBlobPath(const std::string& cache_dir, const Digest& digest);

}  // namespace layerfs

#endif  // LAYERFS_REGISTRY_REGISTRY_IMAGE_H_
