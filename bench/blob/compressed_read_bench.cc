// Reads of gzip and zstd layers served in place: inflate throughput of whole spans (zlib against
// ISA-L), and the latency of random 4 KiB reads that find no decompressed span in memory.
//
// The layer is the largest compressible gzip layer of $LAYERFS_CORPUS/oci when that image exists
// (the real debian-python image, tests/corpus/build-image.sh), else a synthetic text layer of 64
// MiB.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "blob/checkpoints.h"
#include "blob/span_decoder.h"
#include "index/layer_store.h"
#include "oci/manifest.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

std::string SyntheticLayout(const testing::TempDir& dir) {
  std::mt19937 rng(1);
  static const char* kWords[] = {"usr ",   "lib ",    "python3 ", "site-packages ",
                                 "def ",   "return ", "import ",  "0x7f ",
                                 "self\n", "class ",  "None ",    "\t"};
  std::string text;
  while (text.size() < (64u << 20)) text += kWords[rng() % 12];
  testing::WriteOciLayout(dir.Sub("oci"), {testing::TarWriter().File("big", text).Finish()},
                          "gzip");
  return dir.Sub("oci");
}

// The layer to read, indexed with `span` into a cache of its own, served with `inflater` and no
// span cache (every read decodes).
struct Fixture {
  testing::TempDir dir;
  Layer layer;

  Fixture(uint64_t span, Inflater inflater) {
    std::string image;
    if (const char* corpus = std::getenv("LAYERFS_CORPUS")) image = std::string(corpus) + "/oci";
    auto spec = LoadImage(image.empty() ? "/nonexistent" : image, LoadOptions{});
    if (!spec.ok()) spec = LoadImage(SyntheticLayout(dir), LoadOptions{});
    if (!spec.ok()) std::abort();
    LayerStore store(dir.Sub("cache"));
    store.set_span(span, true);
    store.set_span_cache(0);
    store.set_inflater(inflater);
    // The largest layer that compresses (the corpus image also has one of random bytes, which
    // deflate stores as they are).
    uint64_t best = 0;
    for (const LayerSpec& l : spec->layers) {
      if (l.compression != Compression::kGzip) continue;
      auto loaded = store.Load(l);
      if (!loaded.ok()) std::abort();
      const uint64_t tar = loaded->index.tar_size();
      if (tar > l.blob.length + l.blob.length / 2 && tar > best) {
        best = tar;
        layer = std::move(loaded).value();
      }
    }
    if (!layer.data) std::abort();
  }
};

void Inflate(benchmark::State& state, Inflater inflater) {
  Fixture f(kDefaultSpan, inflater);
  const CheckpointTable table = f.layer.index.checkpoints();
  const uint64_t size = f.layer.data->size();
  std::vector<char> buf;
  uint64_t bytes = 0;
  for (auto _ : state) {
    for (size_t k = 0; k < table.count; ++k) {
      const uint64_t start = table.points[k].out_offset;
      const uint64_t end = k + 1 < table.count ? table.points[k + 1].out_offset : size;
      buf.resize(end - start);
      if (!f.layer.data->ReadAt(start, buf.data(), buf.size()).ok()) std::abort();
      bytes += buf.size();
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.SetLabel(std::string(InflaterName(inflater)) + ", " + std::to_string(size >> 20) +
                 " MiB layer");
}

void BM_InflateSpans_Zlib(benchmark::State& state) { Inflate(state, Inflater::kZlib); }
void BM_InflateSpans_Isal(benchmark::State& state) {
  if (!HaveIsal()) return state.SkipWithError("built without ISA-L");
  Inflate(state, Inflater::kIsal);
}
BENCHMARK(BM_InflateSpans_Zlib)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_InflateSpans_Isal)->Unit(benchmark::kMillisecond)->Iterations(3);

// Random 4 KiB reads, none finding its span in memory; p50 and p99 of the single reads in µs.
void BM_RandomRead4K(benchmark::State& state) {
  const uint64_t span = static_cast<uint64_t>(state.range(0)) << 20;
  Fixture f(span, DefaultInflater());
  const uint64_t size = f.layer.data->size();
  std::mt19937_64 rng(42);
  std::vector<double> us;
  char buf[4096];
  for (auto _ : state) {
    const uint64_t off = rng() % (size - sizeof(buf));
    auto t0 = std::chrono::steady_clock::now();
    if (!f.layer.data->ReadAt(off, buf, sizeof(buf)).ok()) std::abort();
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[us.size() * 99 / 100];
  state.counters["index_KiB"] = static_cast<double>(f.layer.index.file_size()) / 1024;
  state.SetLabel(std::string(InflaterName(DefaultInflater())) + ", span " +
                 std::to_string(state.range(0)) + " MiB");
}
BENCHMARK(BM_RandomRead4K)->Arg(1)->Arg(4)->Unit(benchmark::kMicrosecond)->Iterations(400);

}  // namespace
}  // namespace layerfs
