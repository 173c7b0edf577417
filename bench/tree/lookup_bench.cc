// Lookups through the merged tree against the layer-by-layer search it replaces, as images grow in
// entries and in layers; merged-tree build time and memory; directory listing and stat.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>

#include "bench/bench_util.h"
#include "index/layer_data.h"
#include "tree/layer_stack.h"
#include "tree/merged_tree.h"

namespace layerfs::bench {
namespace {

struct Image {
  std::vector<std::string> paths;     // in lookup order
  std::vector<Layer> layers;
  MergedTree tree;
};

// Images are built once per (files, layers) and kept for the whole run.
const Image& GetImage(size_t files, size_t layers) {
  static std::map<std::pair<size_t, size_t>, std::unique_ptr<Image>> cache;
  auto& slot = cache[{files, layers}];
  if (!slot) {
    slot = std::make_unique<Image>();
    std::vector<std::string> paths = SyntheticPaths(files);
    slot->layers = SpreadOverLayers(paths, layers);
    auto tree = MergedTree::Build(slot->layers);
    if (!tree.ok()) throw std::runtime_error(tree.status().message());
    slot->tree = std::move(tree).value();
    slot->paths = Shuffled(std::move(paths));
  }
  return *slot;
}

// Full-path resolution, one hash probe per component.
void BM_TreeLookup(benchmark::State& state, size_t files, size_t layers) {
  const Image& image = GetImage(files, layers);
  size_t i = 0;
  for (auto _ : state) {
    uint32_t node = image.tree.LookupPath(image.paths[i]);
    benchmark::DoNotOptimize(node);
    if (++i == image.paths.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["entries"] = static_cast<double>(image.tree.visible_count());
}

// The same lookups done layer by layer, top first, as an overlay without a merged index must.
void BM_StackLookup(benchmark::State& state, size_t files, size_t layers) {
  const Image& image = GetImage(files, layers);
  size_t i = 0;
  for (auto _ : state) {
    StackHit hit = StackLookup(image.layers, image.layers.size(), image.paths[i]);
    benchmark::DoNotOptimize(hit);
    if (++i == image.paths.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// One (directory, name) probe: what a FUSE LOOKUP costs inside layerfs.
void BM_TreeLookupChild(benchmark::State& state) {
  const Image& image = GetImage(100000, 1);
  std::vector<std::pair<uint32_t, std::string>> probes;
  for (size_t k = 0; k < 4096; ++k) {
    const std::string& p = image.paths[k];
    size_t slash = p.rfind('/');
    probes.emplace_back(image.tree.LookupPath(p.substr(0, slash)), p.substr(slash + 1));
  }
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(image.tree.Lookup(probes[i].first, probes[i].second));
    i = (i + 1) & 4095;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TreeLookupChild);

void BM_TreeBuild(benchmark::State& state) {
  const size_t files = static_cast<size_t>(state.range(0));
  const size_t layers = static_cast<size_t>(state.range(1));
  std::vector<Layer> stack = SpreadOverLayers(SyntheticPaths(files), layers);
  size_t bytes = 0;
  size_t entries = 0;
  for (auto _ : state) {
    auto tree = MergedTree::Build(stack);
    bytes = tree->memory_bytes();
    entries = tree->visible_count();
    benchmark::DoNotOptimize(tree);
  }
  size_t index_bytes = 0;
  for (const Layer& l : stack) index_bytes += l.index.file_size();
  state.counters["entries"] = static_cast<double>(entries);
  state.counters["tree_B/entry"] = static_cast<double>(bytes) / static_cast<double>(entries);
  state.counters["index_B/entry"] =
      static_cast<double>(index_bytes) / static_cast<double>(entries);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(entries));
}
BENCHMARK(BM_TreeBuild)->Args({10000, 1})->Args({100000, 1})->Args({1000000, 1})
    ->Args({100000, 8})->Args({100000, 128})->Unit(benchmark::kMillisecond);

// A listing with attributes of every entry of one large directory (what READDIRPLUS does).
void BM_ReaddirPlus(benchmark::State& state) {
  const size_t files = static_cast<size_t>(state.range(0));
  std::vector<std::string> paths;
  for (size_t i = 0; i < files; ++i) paths.push_back("big/file-" + std::to_string(i) + ".txt");
  static std::map<size_t, std::pair<std::vector<Layer>, MergedTree>> cache;
  auto& slot = cache[files];
  if (slot.first.empty()) {
    slot.first.push_back(LayerFromPaths(paths, 0));
    slot.second = std::move(MergedTree::Build(slot.first)).value();
  }
  const MergedTree& tree = slot.second;
  uint32_t dir = tree.LookupPath("big");
  for (auto _ : state) {
    struct stat st;
    for (uint32_t child : tree.Children(dir)) {
      benchmark::DoNotOptimize(tree.Name(child));
      tree.Stat(child, &st);
      benchmark::DoNotOptimize(st);
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(files));
}
BENCHMARK(BM_ReaddirPlus)->Arg(10000)->Arg(100000);

void BM_Stat(benchmark::State& state) {
  const Image& image = GetImage(100000, 8);
  std::vector<uint32_t> nodes;
  for (size_t k = 0; k < 4096; ++k) nodes.push_back(image.tree.LookupPath(image.paths[k]));
  size_t i = 0;
  struct stat st;
  for (auto _ : state) {
    image.tree.Stat(nodes[i], &st);
    benchmark::DoNotOptimize(st);
    i = (i + 1) & 4095;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Stat);

void RegisterLookups() {
  for (size_t files : {10000, 100000, 1000000}) {
    benchmark::RegisterBenchmark(("BM_TreeLookup/entries:" + std::to_string(files)).c_str(),
                                 BM_TreeLookup, files, size_t{1});
  }
  for (size_t layers : {1, 8, 32, 128}) {
    benchmark::RegisterBenchmark(("BM_TreeLookup/layers:" + std::to_string(layers)).c_str(),
                                 BM_TreeLookup, size_t{100000}, layers);
    benchmark::RegisterBenchmark(("BM_StackLookup/layers:" + std::to_string(layers)).c_str(),
                                 BM_StackLookup, size_t{100000}, layers);
  }
}

const int kRegistered = (RegisterLookups(), 0);

}  // namespace
}  // namespace layerfs::bench
