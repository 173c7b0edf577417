// Compressed layers read in place: the checkpoints found while indexing, and reads from them,
// byte for byte against the uncompressed tar, for the compressors that write real layers.
#include "blob/compressed_source.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "blob/checkpoints.h"
#include "index/layer_store.h"
#include "oci/manifest.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TarWriter;

// Text with long repeats and varying words: deflate makes blocks of many sizes from it.
std::string Words(size_t size, uint32_t seed) {
  static const char* kWords[] = {"layer ",  "index ", "span ",  "checkpoint ",
                                 "window ", "gzip ",  "zstd\n", "tar ",
                                 "blob ",   "mount ", "read ",  "0123456789 "};
  std::mt19937 rng(seed);
  std::string out;
  while (out.size() < size) out += kWords[rng() % 12];
  out.resize(size);
  return out;
}

std::string Noise(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// A layer of about 6 MiB: compressible text, incompressible bytes (stored deflate blocks), and
// small files between them.
std::string TestTar() {
  TarWriter w;
  w.Dir("usr").File("usr/words.txt", Words(3u << 20, 1)).File("usr/empty", "");
  for (int i = 0; i < 40; ++i) w.File("usr/small" + std::to_string(i), Words(100 + i * 37, i));
  w.File("usr/noise.bin", Noise(1u << 20, 2)).File("usr/more.txt", Words(2u << 20, 3));
  return w.Finish();
}

struct Loaded {
  testing::TempDir dir;
  std::string tar;
  Layer layer;
};

// The tar compressed by `compression` (as WriteOciLayout takes it), indexed with a 64 KiB span.
void Load(Loaded& t, const std::string& compression, Inflater inflater, uint64_t cache_bytes) {
  testing::WriteOciLayout(t.dir.Sub("image"), {t.tar}, compression);
  auto image = LoadImage(t.dir.Sub("image"), LoadOptions{});
  REQUIRE(image.ok());
  LayerStore store(t.dir.Sub("cache"));
  store.set_span(kMinSpan, true);
  store.set_span_cache(cache_bytes);
  store.set_inflater(inflater);
  auto layer = store.Load(image->layers[0]);
  INFO(layer.status().message());
  REQUIRE(layer.ok());
  t.layer = std::move(layer).value();
}

std::string Read(const Layer& layer, uint64_t offset, size_t size) {
  std::string out(size, '\0');
  Status s = layer.data->ReadAt(offset, out.data(), size);
  INFO(s.message());
  REQUIRE(s.ok());
  return out;
}

void CheckReads(const Loaded& t) {
  const Layer& layer = t.layer;
  const uint64_t size = t.tar.size();
  REQUIRE(layer.data->size() == size);
  REQUIRE(layer.data->FileAt(0).fd == -1);  // not a file: no uncompressed copy
  // Everything, front to back, in reads of an odd size.
  std::string all;
  for (uint64_t off = 0; off < size; off += 100'003) {
    all += Read(layer, off, static_cast<size_t>(std::min<uint64_t>(100'003, size - off)));
  }
  REQUIRE(all == t.tar);
  // Every class of offset: each checkpoint, just before and after it (reads that cross it), the
  // middle of each span, the first and the very last bytes.
  const CheckpointTable table = layer.index.checkpoints();
  REQUIRE(table.count > 1);
  std::vector<uint64_t> offsets = {0, size - 1, size - 4096, size / 2};
  for (size_t k = 0; k < table.count; ++k) {
    const uint64_t at = table.points[k].out_offset;
    const uint64_t next = k + 1 < table.count ? table.points[k + 1].out_offset : size;
    offsets.push_back(at);
    offsets.push_back((at + next) / 2);
    if (at >= 100) offsets.push_back(at - 100);
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) offsets.push_back(rng() % size);
  for (uint64_t off : offsets) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(4096, size - off));
    INFO("offset " << off);
    CHECK(Read(layer, off, n) == t.tar.substr(off, n));
  }
}

TEST_CASE("compressed: checkpoints round-trip for every compressor", "[compressed]") {
  struct Case {
    const char* name;
    std::string compression;
  };
  const std::string py =
      "python3 -c 'import gzip,sys; "
      "sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read()))'";
  const Case cases[] = {
      {"zlib", "gzip"},
      {"python gzip", "cmd:" + py},
      {"gzip -9", "cmd:gzip -9 -c"},
      {"gzip -1 with a name", "cmd:gzip -1 -c -N"},
      {"pigz", "cmd:pigz -c"},
      {"pigz, independent blocks", "cmd:pigz -i -b 128 -c"},
      {"multi-member gzip",
       "cmd:python3 -c 'import gzip,sys; d=sys.stdin.buffer.read(); "
       "sys.stdout.buffer.write(gzip.compress(d[:2500000]) + gzip.compress(b\"\") + "
       "gzip.compress(d[2500000:], 9))'"},
      {"pzstd", "cmd:pzstd -p 2 -1 -q -c"},
  };
  for (const Case& c : cases) {
    for (Inflater inflater : {Inflater::kZlib, Inflater::kIsal}) {
      if (inflater == Inflater::kIsal && !HaveIsal()) continue;
      for (uint64_t cache : {uint64_t{64} << 20, uint64_t{0}}) {
        // Without a span cache every read decodes from its checkpoint: once per inflater.
        if (cache == 0 && &c != &cases[0] && &c != &cases[6]) continue;
        DYNAMIC_SECTION(c.name << ", " << InflaterName(inflater) << ", span cache " << cache) {
          Loaded t;
          t.tar = TestTar();
          Load(t, c.compression, inflater, cache);
          CHECK_THAT(
              t.layer.served,
              Catch::StartsWith(c.compression.find("zstd") != std::string::npos ? "zstd frames"
                                                                                : "checkpoints"));
          CheckReads(t);
        }
      }
    }
  }
}

TEST_CASE("compressed: gzip with FEXTRA, FNAME, FCOMMENT and FHCRC headers", "[compressed]") {
  Loaded t;
  t.tar = TestTar();
  // A member with every optional header field, then an ordinary one, then zero padding.
  const std::string script =
      "import gzip,struct,sys,zlib\n"
      "data=sys.stdin.buffer.read(); half=len(data)//3\n"
      "def member(d, extra):\n"
      "  c=zlib.compressobj(6, zlib.DEFLATED, -15); body=c.compress(d)+c.flush()\n"
      "  flg=0x1e if extra else 0\n"
      "  h=b'\\x1f\\x8b\\x08'+bytes([flg])+b'\\0\\0\\0\\0\\0\\x03'\n"
      "  if extra: h+=struct.pack('<H',4)+b'ab\\0\\0'+b'name.tar\\0'+b'a comment\\0'\n"
      "  if extra: h+=struct.pack('<H', zlib.crc32(h) & 0xffff)\n"
      "  return h+body+struct.pack('<II', zlib.crc32(d), len(d) & 0xffffffff)\n"
      "sys.stdout.buffer.write(member(data[:half], True)+member(data[half:], False)+b'\\0'*512)\n";
  testing::WriteFile(t.dir.Sub("gz.py"), script);
  Load(t, "cmd:python3 " + testing::ShellQuote(t.dir.Sub("gz.py")), DefaultInflater(), 64u << 20);
  CheckReads(t);
}

TEST_CASE("compressed: a sequential read makes each span once and stays within the bound",
          "[compressed]") {
  Loaded t;
  t.tar = TestTar();
  testing::WriteOciLayout(t.dir.Sub("image"), {t.tar}, "gzip");
  auto image = LoadImage(t.dir.Sub("image"), LoadOptions{});
  REQUIRE(image.ok());
  LayerStore store(t.dir.Sub("cache"));
  store.set_span(kMinSpan, true);
  store.set_span_cache(4u << 20);
  auto layer = store.Load(image->layers[0]);
  REQUIRE(layer.ok());
  // A sequential read in FUSE-sized requests decompresses each span once.
  for (uint64_t off = 0; off < t.tar.size(); off += 131072) {
    Read(*layer, off, static_cast<size_t>(std::min<uint64_t>(131072, t.tar.size() - off)));
  }
  SpanCache::Stats stats = store.span_cache()->stats();
  // Each span made once: by the first read of it, or ahead of it by the read before.
  CHECK(stats.misses + stats.prefetches == layer->index.checkpoint_count());
  CHECK(stats.prefetches > 0);
  CHECK(stats.bytes <= (4u << 20));
  CHECK(stats.evictions > 0);
}

}  // namespace
}  // namespace layerfs
