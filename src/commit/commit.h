// layerfs commit: the changes in a scratch directory as a new top layer, and the image with it.
#ifndef LAYERFS_COMMIT_COMMIT_H_
#define LAYERFS_COMMIT_COMMIT_H_

#include <string>
#include <vector>

#include "index/layer_store.h"
#include "layerfs/status.h"
#include "oci/manifest.h"
#include "tar/layer_writer.h"
#include "tree/merged_tree.h"

namespace layerfs {

struct ScratchLayerStats {
  size_t entries = 0;     // tar entries written (whiteouts included)
  size_t whiteouts = 0;   // .wh. entries, opaque markers included
  size_t metacopies = 0;  // files whose content came from the image
  size_t skipped = 0;     // sockets: a tar cannot hold them
};

// Writes everything under the scratch directory's `upper_fd` through `writer`, in sorted order:
// files, directories, symlinks, devices and hard links with their metadata and xattrs, whiteouts
// as `.wh.NAME` and opaque directories as `.wh..wh..opq`. A metadata copy gets its content from
// `tree` (the image the scratch directory belongs to).
Result<ScratchLayerStats> WriteScratchLayer(int upper_fd, const MergedTree& tree,
                                            LayerWriter* writer);

enum class ImageFormat { kDocker, kOci };

struct CommitOptions {
  ImageFormat format = ImageFormat::kOci;
  Compression compression = Compression::kGzip;
  std::string tag;  // OCI ref name, or docker RepoTag
  std::string created_by = "layerfs commit";
};

// Writes the image `base` (whose layers are `layers`) plus the new top layer whose blob is the
// file `layer_path` (described by `written`), as a new image directory `out`: docker-save layout
// (manifest.json) or OCI image layout. `out` must not exist; it appears complete or not at all.
Status WriteCommittedImage(const ImageSpec& base, const std::vector<Layer>& layers,
                           const std::string& layer_path, const WrittenLayer& written,
                           const CommitOptions& options, const std::string& out);

// A commit works beside `out`, in `out.layer-PID` (the new layer's blob) and `out.tmp-PID` (the
// image being written), each flock'ed by its commit while in use. Removes those that a commit
// killed before it finished left behind: ones whose process is gone and whose lock is free.
// Returns how many it removed.
int RemoveStaleCommitFiles(const std::string& out);

}  // namespace layerfs

#endif  // LAYERFS_COMMIT_COMMIT_H_
