// Synthetic images for the micro-benchmarks.
#ifndef LAYERFS_BENCH_BENCH_UTIL_H_
#define LAYERFS_BENCH_BENCH_UTIL_H_

#include <string>
#include <vector>

#include "index/layer_store.h"

namespace layerfs::bench {

// Deterministic paths of a synthetic image: `files` files in directories three to five levels
// deep, about 32 entries per directory, names of realistic lengths.
std::vector<std::string> SyntheticPaths(size_t files);

// A layer holding `paths` as empty regular files (parents implied), indexed without a tar.
Layer LayerFromPaths(const std::vector<std::string>& paths, size_t position);

// The same files spread round-robin over `layers` layers.
std::vector<Layer> SpreadOverLayers(const std::vector<std::string>& paths, size_t layers);

// `paths` in a fixed pseudo-random order, so that lookups do not walk memory in index order.
std::vector<std::string> Shuffled(std::vector<std::string> paths);

}  // namespace layerfs::bench

#endif  // LAYERFS_BENCH_BENCH_UTIL_H_
