// A READDIRPLUS of one large directory as the FUSE operations make it through MountTree: batches
// of what one 4 KiB reply holds, each entry's attributes counted as a lookup and then forgotten.
// Beside BM_ReaddirPlus (lookup_bench.cc: the merged tree alone), it shows what the interface and
// the offsets cost, read-only and writable, and with names in the scratch directory.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>

#include "bench/bench_util.h"
#include "tree/image_tree.h"
#include "tree/writable_tree.h"

namespace layerfs::bench {
namespace {

constexpr size_t kBatch = 4096 / 152 + 1;  // what ops.cc asks for a 4 KiB READDIRPLUS

struct BigDir {
  std::vector<Layer> layers;
  MergedTree tree;
};

const BigDir& GetBigDir(size_t files) {
  static std::map<size_t, std::unique_ptr<BigDir>> cache;
  auto& slot = cache[files];
  if (!slot) {
    slot = std::make_unique<BigDir>();
    std::vector<std::string> paths;
    for (size_t i = 0; i < files; ++i) paths.push_back("big/file-" + std::to_string(i) + ".txt");
    slot->layers.push_back(LayerFromPaths(paths, 0));
    slot->tree = std::move(MergedTree::Build(slot->layers)).value();
  }
  return *slot;
}

void ListAll(MountTree& tree, MountTree::Ino dir, benchmark::State& state) {
  std::vector<MountTree::DirItem> items;
  for (auto _ : state) {
    uint64_t offset = 0;
    for (;;) {
      items.clear();
      if (tree.ReadDir(dir, offset, kBatch, &items) != 0 || items.empty()) break;
      for (const MountTree::DirItem& item : items) {
        struct stat st;
        if (item.next > MountTree::kListFirst && tree.GetAttr(item.ino, &st, true) == 0) {
          benchmark::DoNotOptimize(st);
          tree.Forget(item.ino, 1);
        }
      }
      offset = items.back().next;
    }
  }
}

void BM_MountTreeReaddirPlus(benchmark::State& state) {
  const size_t files = static_cast<size_t>(state.range(0));
  const bool writable = state.range(1) != 0;
  const size_t made = static_cast<size_t>(state.range(2));
  const BigDir& big = GetBigDir(files);
  std::unique_ptr<MountTree> tree;
  if (writable) {
    auto scratch = ScratchDir::CreateEphemeral({"sha256:bench"});
    if (!scratch.ok()) return state.SkipWithError(scratch.status().message().c_str());
    auto w = std::make_unique<WritableTree>(big.tree, std::move(*scratch), false);
    if (!w->Load().ok()) return state.SkipWithError("load");
    tree = std::move(w);
  } else {
    tree = std::make_unique<ImageTree>(big.tree);
  }
  struct stat st;
  if (tree->Lookup(1, "big", &st) != 0) return state.SkipWithError("no big/");
  const MountTree::Ino dir = st.st_ino;
  for (size_t i = 0; i < made; ++i) {
    struct stat made_st;
    if (tree->Create(dir, "made-" + std::to_string(i), S_IFREG | 0644, {}, &made_st) != 0) {
      return state.SkipWithError("create");
    }
  }
  ListAll(*tree, dir, state);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(files + made));
}
// files, writable, names made in the scratch directory
BENCHMARK(BM_MountTreeReaddirPlus)
    ->Args({10000, 0, 0})
    ->Args({10000, 1, 0})
    ->Args({10000, 1, 1000})
    ->ArgNames({"files", "writable", "made"});

}  // namespace
}  // namespace layerfs::bench
