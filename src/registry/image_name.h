// ImageName: an image as the command line names it, in the containers-transports spelling that
// skopeo and podman use, beside the bare paths layerfs has always taken:
//
//   PATH                            a docker-save or OCI layout directory, or an archive of one
//   oci:DIR[:REF]                   an OCI layout; REF picks by ref name (as --ref does)
//   docker-archive:PATH[:REF]       a `docker save` archive; REF picks by RepoTag
//   oci-archive:PATH[:REF]          an OCI layout in a tar archive
//   docker://[HOST[:PORT]/]REPO[:TAG|@DIGEST]   an image in a registry (default docker.io,
//                                   "library/" for single names there, tag "latest")
#ifndef LAYERFS_REGISTRY_IMAGE_NAME_H_
#define LAYERFS_REGISTRY_IMAGE_NAME_H_

#include <optional>
#include <string>
#include <string_view>

#include "layerfs/digest.h"
#include "layerfs/status.h"

namespace layerfs {

struct ImageName {
  enum class Transport { kPath, kOci, kDockerArchive, kOciArchive, kDocker };
  Transport transport = Transport::kPath;
  std::string path;  // the local transports
  std::string ref;   // oci:, docker-archive:, oci-archive: after the path

  // docker://
  std::string registry;    // "registry.example.com:5000", "docker.io"
  std::string repository;  // "team/app", "library/debian"
  std::string tag;         // empty when only a digest is given
  std::optional<Digest> digest;

  bool remote() const { return transport == Transport::kDocker; }
  // What a manifest request names: the digest if given, else the tag.
  std::string reference() const { return digest ? digest->str() : tag; }
  // The registry's API host: docker.io's is registry-1.docker.io.
  std::string api_host() const;
  // docker://HOST/REPO:TAG@DIGEST as normalized.
  std::string str() const;
};

Result<ImageName> ParseImageName(std::string_view text);

}  // namespace layerfs

#endif  // LAYERFS_REGISTRY_IMAGE_NAME_H_
