#include "index/layer_data.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "index/index_builder.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::RandomBytes;
using testing::TarWriter;

// A layer whose sparse files are given by hand: `data` is the layer's uncompressed tar, of which
// only the bytes that the runs point at matter.
struct SparseLayer {
  std::string data = RandomBytes(4096, 1);
  Layer layer;
  struct File {
    std::string path;
    uint64_t size;
    std::vector<SparseRun> runs;
  };
  std::vector<File> files = {
      // Data at 5, 20 and in the last ten bytes; holes between.
      {"ends-with-data", 40, {{5, 5, 100}, {20, 3, 200}, {30, 10, 300}}},
      // Data first, then a hole to the end.
      {"ends-with-hole", 50, {{0, 4, 400}}},
      // Adjacent runs from different places in the tar.
      {"adjacent-runs", 12, {{0, 6, 1000}, {6, 6, 2000}}},
  };

  SparseLayer() {
    IndexBuilder b;
    uint64_t n = 0;
    for (const File& f : files) {
      TarEntry e{};
      e.path = f.path;
      e.type = TarEntryType::kRegular;
      e.size = f.size;
      e.data_offset = f.runs[0].physical;
      e.sparse = f.runs;
      e.index = n++;
      REQUIRE(b.Add(e).ok());
    }
    auto bytes = b.Finish(testing::Sha256Of(data), data.size());
    REQUIRE(bytes.ok());
    auto index = LayerIndex::FromBytes(std::move(bytes).value());
    REQUIRE(index.ok());
    layer.index = std::move(index).value();
    layer.data = FileSource::Open(std::make_shared<UniqueFd>(testing::TempFileWith(data)), 0,
                                  data.size(), "sparse.tar")
                     .value();
    layer.label = "layer 3 (sparse)";
  }

  std::string Expected(const File& f) const {
    std::string out(f.size, '\0');
    for (const SparseRun& r : f.runs)
      out.replace(r.logical, r.length, data.substr(r.physical, r.length));
    return out;
  }
};

TEST_CASE("read: every range of a sparse file reads as its data and zeroed holes", "[index]") {
  SparseLayer s;
  for (const SparseLayer::File& f : s.files) {
    INFO(f.path);
    const std::string expected = s.Expected(f);
    const IndexEntry& e = s.layer.index.entry(s.layer.index.FindPath(f.path));
    REQUIRE((e.flags & kFlagSparse) != 0);
    for (uint64_t offset = 0; offset <= f.size + 2; ++offset) {
      for (size_t size = 0; size <= f.size + 2; ++size) {
        std::string buf(size + 8, '\x7e');  // guard bytes after the requested size
        auto n = ReadEntry(s.layer, e, offset, buf.data(), size);
        REQUIRE(n.ok());
        const std::string want = offset >= f.size ? "" : expected.substr(offset, size);
        INFO("offset " << offset << " size " << size);
        REQUIRE(*n == want.size());
        REQUIRE(buf.substr(0, *n) == want);
        REQUIRE(buf.substr(size) == std::string(8, '\x7e'));
      }
    }
  }
}

TEST_CASE("read: PlanRead splits a sparse read into runs and holes in order", "[index]") {
  SparseLayer s;
  const IndexEntry& e = s.layer.index.entry(s.layer.index.FindPath("ends-with-data"));
  std::vector<ReadSegment> segments;
  REQUIRE(PlanRead(s.layer, e, 0, 1000, &segments) == 40);
  REQUIRE(segments.size() == 6);
  CHECK(segments[0].hole);
  CHECK(segments[0].length == 5);
  CHECK_FALSE(segments[1].hole);
  CHECK(segments[1].pos == 100);
  CHECK(segments[1].length == 5);
  CHECK(segments[2].hole);
  CHECK(segments[2].length == 10);
  CHECK(segments[3].pos == 200);
  CHECK(segments[4].hole);
  CHECK(segments[4].length == 7);
  CHECK(segments[5].pos == 300);
  CHECK(segments[5].length == 10);

  // Starting inside the second run: the first segment begins mid-run.
  segments.clear();
  REQUIRE(PlanRead(s.layer, e, 21, 5, &segments) == 5);
  REQUIRE(segments.size() == 2);
  CHECK(segments[0].pos == 201);
  CHECK(segments[0].length == 2);
  CHECK(segments[1].hole);
  CHECK(segments[1].length == 3);
}

TEST_CASE("read: reads at or past the end of a file return nothing", "[index]") {
  auto layer = testing::IndexTar(TarWriter().File("f", "0123456789").File("empty", "").Finish());
  REQUIRE(layer.ok());
  const IndexEntry& f = layer->index.entry(layer->index.FindPath("f"));
  char buf[16];
  std::vector<ReadSegment> segments;
  CHECK(PlanRead(*layer, f, 10, 5, &segments) == 0);
  CHECK(PlanRead(*layer, f, 1000, 5, &segments) == 0);
  CHECK(PlanRead(*layer, f, 3, 0, &segments) == 0);
  CHECK(segments.empty());
  auto n = ReadEntry(*layer, f, 8, buf, sizeof(buf));
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "89");
  const IndexEntry& empty = layer->index.entry(layer->index.FindPath("empty"));
  n = ReadEntry(*layer, empty, 0, buf, sizeof(buf));
  REQUIRE(n.ok());
  CHECK(*n == 0);
}

TEST_CASE("read: file data is found at the layer's offset inside its data file", "[index]") {
  // As for a layer inside a docker-save archive: the tar starts 777 bytes into the file.
  const std::string tar =
      TarWriter().File("a/b", "in the middle").File("c", RandomBytes(9000, 2)).Finish();
  auto layer = testing::IndexTar(tar);
  REQUIRE(layer.ok());
  layer->data = FileSource::Open(std::make_shared<UniqueFd>(testing::TempFileWith(
                                    std::string(777, 'J') + tar + std::string(100, 'K'))),
                                777, tar.size(), "image.tar:layer.tar")
                    .value();
  CHECK(testing::ReadPath(*layer, "a/b").value() == "in the middle");
  CHECK((testing::ReadPath(*layer, "c", 1000).value() == RandomBytes(9000, 2)));
  std::vector<ReadSegment> segments;
  const IndexEntry& e = layer->index.entry(layer->index.FindPath("a/b"));
  REQUIRE(PlanRead(*layer, e, 3, 4, &segments) == 4);
  REQUIRE(segments.size() == 1);
  CHECK(segments[0].pos == e.data + 3);
  CHECK(layer->data->FileAt(segments[0].pos).pos == 777 + e.data + 3);
}

TEST_CASE("read: a data file shorter than its index says is an error naming the layer", "[index]") {
  const std::string tar = TarWriter().File("big", RandomBytes(20000, 3)).Finish();
  auto layer = testing::IndexTar(tar);
  REQUIRE(layer.ok());
  layer->label = "layer 4 (sha256:0123456789ab)";
  const IndexEntry& e = layer->index.entry(layer->index.FindPath("big"));
  REQUIRE(::ftruncate(layer->data->FileAt(0).fd, static_cast<off_t>(e.data + 1000)) == 0);
  std::string buf(20000, '\0');
  auto n = ReadEntry(*layer, e, 0, buf.data(), buf.size());
  REQUIRE_FALSE(n.ok());
  CHECK(n.status().code() == EIO);
  CHECK_THAT(n.status().message(), Catch::Contains("layer 4 (sha256:0123456789ab)"));
  // The part still present reads fine.
  auto head = ReadEntry(*layer, e, 0, buf.data(), 1000);
  REQUIRE(head.ok());
  CHECK(*head == 1000);
}

TEST_CASE("read: a layer whose bytes are not a file's reads and copies out the same", "[index]") {
  SparseLayer s;
  s.layer.data = std::make_shared<testing::MemorySource>(s.data);
  testing::TempDir dir;
  for (const SparseLayer::File& f : s.files) {
    INFO(f.path);
    const IndexEntry& e = s.layer.index.entry(s.layer.index.FindPath(f.path));
    std::string buf(f.size, '\x7e');
    auto n = ReadEntry(s.layer, e, 0, buf.data(), buf.size());
    REQUIRE(n.ok());
    CHECK(buf == s.Expected(f));
    CHECK(s.layer.data->FileAt(0).fd == -1);
    // Copy-up's path: into a fresh file, with the holes left unwritten.
    UniqueFd out(::open(dir.Sub(f.path).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    REQUIRE(out);
    REQUIRE(CopyEntry(s.layer, e, out.get()).ok());
    CHECK(testing::ReadFile(dir.Sub(f.path)) == s.Expected(f));
  }
}

TEST_CASE("read: CopyEntry from a file source copies a plain file whole", "[index]") {
  const std::string big = RandomBytes(300000, 9);
  auto layer = testing::IndexTar(TarWriter().File("big", big).Finish());
  REQUIRE(layer.ok());
  testing::TempDir dir;
  UniqueFd out(::open(dir.Sub("out").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  REQUIRE(out);
  REQUIRE(CopyEntry(*layer, layer->index.entry(layer->index.FindPath("big")), out.get()).ok());
  CHECK((testing::ReadFile(dir.Sub("out")) == big));
}

TEST_CASE("read: a source that ends before its index says fails CopyEntry with EIO", "[index]") {
  const std::string tar = TarWriter().File("big", RandomBytes(20000, 3)).Finish();
  auto layer = testing::IndexTar(tar);
  REQUIRE(layer.ok());
  layer->data = std::make_shared<testing::MemorySource>(tar.substr(0, 5000));
  testing::TempDir dir;
  UniqueFd out(::open(dir.Sub("out").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  Status copied = CopyEntry(*layer, layer->index.entry(layer->index.FindPath("big")), out.get());
  CHECK(copied.code() == EIO);
  CHECK_THAT(copied.message(), Catch::Contains(layer->label));
}

TEST_CASE("read: SEEK_DATA and SEEK_HOLE follow a sparse file's runs", "[index]") {
  SparseLayer s;
  const LayerIndex& ix = s.layer.index;
  const IndexEntry& e = ix.entry(ix.FindPath("ends-with-data"));  // data 5-9, 20-22, 30-39
  auto seek = [&](uint64_t off, int whence) -> int64_t {
    auto r = SeekEntry(ix, e, off, whence);
    return r.ok() ? static_cast<int64_t>(*r) : -r.status().code();
  };
  CHECK(seek(0, SEEK_DATA) == 5);
  CHECK(seek(0, SEEK_HOLE) == 0);
  CHECK(seek(6, SEEK_HOLE) == 10);
  CHECK(seek(10, SEEK_DATA) == 20);
  CHECK(seek(31, SEEK_HOLE) == 40);  // the end of the file counts as a hole
  CHECK(seek(40, SEEK_DATA) == -ENXIO);
  CHECK(seek(0, SEEK_SET) == -EINVAL);
  const IndexEntry& adjacent = ix.entry(ix.FindPath("adjacent-runs"));
  auto r = SeekEntry(ix, adjacent, 1, SEEK_HOLE);
  REQUIRE(r.ok());
  CHECK(*r == 12);  // two runs that touch are one stretch of data
  const IndexEntry& tail_hole = ix.entry(ix.FindPath("ends-with-hole"));
  r = SeekEntry(ix, tail_hole, 4, SEEK_DATA);
  CHECK(r.status().code() == ENXIO);
}

}  // namespace
}  // namespace layerfs
