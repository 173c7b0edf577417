// Opening an image the way every command does: manifests, layers from the cache (indexing what is
// not cached yet), and the merged tree. Above the tree, below the commands.
#ifndef LAYERFS_IMAGE_OPENED_IMAGE_H_
#define LAYERFS_IMAGE_OPENED_IMAGE_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "blob/span_cache.h"
#include "index/layer_store.h"
#include "oci/manifest.h"
#include "registry/registry_client.h"
#include "tree/merged_tree.h"

namespace layerfs {

// What names an image on the command line, shared by every command.
struct ImageArgs {
  std::string image;
  std::string cache;  // empty: LayerStore::DefaultDir()
  std::string ref;
  std::string platform;
  uint64_t span = 0;        // compressed layers indexed now: checkpoint distance (0: the default)
  bool span_given = false;  // a cached index of another span is rebuilt
  uint64_t span_cache = kDefaultSpanCache;
  RegistryOptions registry;  // docker://: credentials, TLS
};

// Reads the manifests of the image `args` names: a path, oci:, docker-archive:, oci-archive: or
// docker:// (ImageName).
Result<ImageSpec> LoadNamedImage(const ImageArgs& args);

// An image ready to use. Heap-allocated and never moved: the tree points at the layers.
struct OpenedImage {
  ImageSpec spec;
  std::vector<Layer> layers;
  MergedTree tree;
  StoreStats stats;
  std::shared_ptr<SpanCache> span_cache;  // shared by the compressed layers served in place
  double ms_to_open = 0;                  // from the start of Open() until the tree was built
};

// Opens the image, logging warnings about skipped entries and timings (at -vv). `progress`, if
// set, hears about layers being indexed (see LayerStore::set_progress).
Result<std::unique_ptr<OpenedImage>> OpenImage(const ImageArgs& args,
                                               IndexProgress progress = nullptr);

using Clock = std::chrono::steady_clock;
inline double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace layerfs

#endif  // LAYERFS_IMAGE_OPENED_IMAGE_H_
