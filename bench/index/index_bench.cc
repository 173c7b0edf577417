// Index build throughput (with and without digest verification), index load, and the read path.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <random>

#include "base/file_util.h"
#include "bench/bench_util.h"
#include "blob/sha256.h"
#include "index/index_builder.h"
#include "index/layer_data.h"
#include "tar/tar_reader.h"
#include "tests/util/tar_writer.h"

namespace layerfs::bench {
namespace {

// A layer tar of `files` files of `size` bytes each, in an unlinked temporary file.
struct TarFile {
  std::shared_ptr<UniqueFd> fd;
  uint64_t size = 0;
};

const TarFile& GetTar(size_t files, size_t size) {
  static std::map<std::pair<size_t, size_t>, TarFile> cache;
  TarFile& t = cache[{files, size}];
  if (!t.fd) {
    testing::TarWriter w;
    std::mt19937_64 rng(1);
    std::string content(size, '\0');
    std::vector<std::string> paths = SyntheticPaths(files);
    for (const std::string& p : paths) {
      for (char& c : content) c = static_cast<char>(rng());
      w.File(p, content);
    }
    std::string tar = w.Finish();
    int fd = ::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || ::pwrite(fd, tar.data(), tar.size(), 0) != static_cast<ssize_t>(tar.size())) {
      throw std::runtime_error("cannot write the benchmark tar");
    }
    t.fd = std::make_shared<UniqueFd>(fd);
    t.size = tar.size();
  }
  return t;
}

// One pass over a tar: parse every header (and hash every byte when verifying), build the index.
void BM_IndexBuild(benchmark::State& state) {
  const bool verify = state.range(0) != 0;
  const TarFile& tar = GetTar(10000, 8192);
  for (auto _ : state) {
    IndexBuilder builder;
    Sha256 hash;
    TarReadOptions options;
    if (verify) options.blob_hash = options.tar_hash = &hash;
    auto stats = ReadTar(tar.fd->get(), 0, tar.size, "bench.tar", options,
                         [&](const TarEntry& e) { return builder.Add(e); });
    if (!stats.ok()) state.SkipWithError(stats.status().message().c_str());
    auto bytes = builder.Finish(Digest(), tar.size);
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(tar.size));
  state.SetLabel(verify ? "with sha256" : "without sha256");
}
BENCHMARK(BM_IndexBuild)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Opening a cached index: map, check the checksum, validate every entry.
void BM_IndexOpen(benchmark::State& state) {
  const size_t files = static_cast<size_t>(state.range(0));
  static std::map<size_t, std::string> paths;
  std::string& path = paths[files];
  if (path.empty()) {
    Layer layer = LayerFromPaths(SyntheticPaths(files), 0);
    path = "/tmp/layerfs-bench-index-" + std::to_string(files) + ".idx";
    std::string bytes(reinterpret_cast<const char*>(&layer.index.header()),
                      layer.index.file_size());
    if (!WriteFileAtomic(path, bytes).ok()) throw std::runtime_error("write index");
  }
  for (auto _ : state) {
    auto index = LayerIndex::Open(path);
    if (!index.ok()) state.SkipWithError(index.status().message().c_str());
    benchmark::DoNotOptimize(index);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(files));
}
BENCHMARK(BM_IndexOpen)->Arg(10000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMicrosecond);

// Reading file data through the index (pread at the indexed offset), from the page cache.
void BM_Read(benchmark::State& state) {
  const size_t file_size = static_cast<size_t>(state.range(0));
  const size_t chunk = std::min<size_t>(file_size, 128 * 1024);
  const TarFile& tar = GetTar(file_size >= (1 << 20) ? 64 : 4096, file_size);
  static std::map<size_t, std::unique_ptr<Layer>> layers;
  auto& layer = layers[file_size];
  if (!layer) {
    IndexBuilder builder;
    auto stats = ReadTar(tar.fd->get(), 0, tar.size, "bench.tar", TarReadOptions{},
                         [&](const TarEntry& e) { return builder.Add(e); });
    layer = std::make_unique<Layer>();
    layer->index = std::move(LayerIndex::FromBytes(std::move(builder.Finish(Digest(), tar.size))
                                                       .value()))
                       .value();
    layer->data = FileSource::Open(tar.fd, 0, tar.size, "bench.tar").value();
  }
  std::vector<uint32_t> files;
  for (uint32_t i = 0; i < layer->index.entry_count(); ++i) {
    if (layer->index.entry(i).type == static_cast<uint8_t>(EntryType::kRegular)) files.push_back(i);
  }
  std::vector<char> buf(chunk);
  size_t k = 0;
  uint64_t offset = 0;
  for (auto _ : state) {
    const IndexEntry& e = layer->index.entry(files[k]);
    auto n = ReadEntry(*layer, e, offset, buf.data(), chunk);
    benchmark::DoNotOptimize(n);
    offset += chunk;
    if (offset >= e.size) {
      offset = 0;
      k = (k + 1) % files.size();
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(chunk));
}
BENCHMARK(BM_Read)->Arg(4096)->Arg(1 << 20);

}  // namespace
}  // namespace layerfs::bench
