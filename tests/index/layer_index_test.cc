#include "index/layer_index.h"

#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/hash.h"
#include "index/index_builder.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

constexpr uint64_t kTarSize = 1 << 20;

// Builds tar entries by hand, so that every field of the index can be given a known value.
class EntryMaker {
 public:
  TarEntry Make(std::string_view path, TarEntryType type) {
    TarEntry e{};
    e.path = path;
    e.type = type;
    e.mode = type == TarEntryType::kDirectory ? 0755 : 0644;
    e.mtime_sec = 1700000000;
    e.index = next_++;
    return e;
  }

 private:
  uint64_t next_ = 0;
};

const std::string kCapability("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00", 12);

// An index with one of everything: directories, an opaque directory, a file with xattrs, a
// sparse file, a symlink, local and lower hard links, devices, a fifo and a whiteout.
std::string RichIndexBytes(const Digest& diff_id) {
  IndexBuilder b;
  EntryMaker m;
  auto add = [&](const TarEntry& e) {
    Status s = b.Add(e);
    INFO(s.message());
    REQUIRE(s.ok());
  };
  add(m.Make("etc", TarEntryType::kDirectory));
  TarEntry passwd = m.Make("etc/passwd", TarEntryType::kRegular);
  passwd.size = 100;
  passwd.data_offset = 512;
  passwd.uid = 7;
  passwd.gid = 8;
  passwd.mtime_nsec = 123;
  passwd.xattrs = {{"security.capability", kCapability}, {"user.x", "y"}};
  add(passwd);
  TarEntry sparse = m.Make("var/lib/sparse.img", TarEntryType::kRegular);
  sparse.size = 1 << 30;
  sparse.data_offset = 2048;
  sparse.sparse = {{0, 512, 2048}, {1 << 20, 1024, 2560}, {(1 << 30) - 10, 10, 3584}};
  add(sparse);
  TarEntry link = m.Make("etc/localtime", TarEntryType::kSymlink);
  link.link_target = "/usr/share/zoneinfo/UTC";
  add(link);
  TarEntry hard = m.Make("etc/passwd-", TarEntryType::kHardlink);
  hard.link_target = "etc/passwd";
  add(hard);
  TarEntry lower = m.Make("usr/bin/python3", TarEntryType::kHardlink);
  lower.link_target = "usr/bin/python3.11";
  add(lower);
  TarEntry null_dev = m.Make("dev/null", TarEntryType::kCharDevice);
  null_dev.rdev_major = 1;
  null_dev.rdev_minor = 3;
  add(null_dev);
  TarEntry disk = m.Make("dev/sda", TarEntryType::kBlockDevice);
  disk.rdev_major = 8;
  disk.rdev_minor = 0;
  add(disk);
  add(m.Make("run/fifo", TarEntryType::kFifo));
  add(m.Make("var/cache/.wh..wh..opq", TarEntryType::kRegular));
  add(m.Make("var/.wh.log", TarEntryType::kRegular));
  for (int i = 0; i < 20; ++i) {
    std::string name = "usr/share/doc/file" + std::to_string(i);
    TarEntry f = m.Make(name, TarEntryType::kRegular);
    f.size = 10;
    f.data_offset = 4096 + 512 * static_cast<uint64_t>(i);
    add(f);
  }
  auto bytes = b.Finish(diff_id, kTarSize);
  REQUIRE(bytes.ok());
  return std::move(bytes).value();
}

Digest TestDigest() { return testing::Sha256Of("a layer"); }

// Recomputes the checksum after a deliberate change, so that the checks behind it are reached.
void Reseal(std::string* bytes) {
  const size_t field = offsetof(IndexHeader, checksum);
  uint64_t zero = 0;
  std::memcpy(bytes->data() + field, &zero, sizeof(zero));
  uint64_t sum = Hash64(bytes->data(), bytes->size());
  std::memcpy(bytes->data() + field, &sum, sizeof(sum));
}

template <typename T>
void Poke(std::string* bytes, size_t offset, T value) {
  REQUIRE(offset + sizeof(T) <= bytes->size());
  std::memcpy(bytes->data() + offset, &value, sizeof(T));
}

IndexHeader HeaderOf(const std::string& bytes) {
  IndexHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  return h;
}

void CheckRefused(const std::string& bytes, const char* what) {
  auto index = LayerIndex::FromBytes(bytes);
  INFO(what);
  REQUIRE_FALSE(index.ok());
  CHECK(index.status().code() == EIO);
  CHECK_THAT(index.status().message(), Catch::StartsWith("invalid index"));
}

TEST_CASE("layer_index: an index from IndexBuilder::Finish round-trips through FromBytes",
          "[index]") {
  const Digest diff_id = TestDigest();
  auto index = LayerIndex::FromBytes(RichIndexBytes(diff_id));
  INFO(index.status().message());
  REQUIRE(index.ok());
  const LayerIndex& ix = *index;
  CHECK(ix.diff_id() == diff_id);
  CHECK(ix.tar_size() == kTarSize);
  CHECK(std::memcmp(ix.header().magic, kIndexMagic, 8) == 0);
  CHECK(ix.header().version == kIndexVersion);
  CHECK(ix.header().tar_entries == 31);

  const IndexEntry& passwd = ix.entry(ix.FindPath("etc/passwd"));
  CHECK(passwd.type == static_cast<uint8_t>(EntryType::kRegular));
  CHECK(passwd.size == 100);
  CHECK(passwd.data == 512);
  CHECK(passwd.uid == 7);
  CHECK(passwd.gid == 8);
  CHECK(passwd.mtime_sec == 1700000000);
  CHECK(passwd.mtime_nsec == 123);
  REQUIRE(ix.xattr_count(passwd) == 2);
  CHECK(ix.xattr_name(passwd, 0) == "security.capability");
  CHECK(ix.xattr_value(passwd, 0) == kCapability);
  CHECK(ix.xattr_name(passwd, 1) == "user.x");
  CHECK(ix.xattr_value(passwd, 1) == "y");

  const IndexEntry& sparse = ix.entry(ix.FindPath("var/lib/sparse.img"));
  CHECK((sparse.flags & kFlagSparse) != 0);
  CHECK(sparse.size == 1 << 30);
  REQUIRE(ix.sparse_run_count(sparse) == 3);
  CHECK(ix.sparse_run(sparse, 1).logical == 1 << 20);
  CHECK(ix.sparse_run(sparse, 1).length == 1024);
  CHECK(ix.sparse_run(sparse, 1).physical == 2560);
  CHECK(ix.sparse_run(sparse, 2).logical == (1 << 30) - 10);

  CHECK(ix.link_target(ix.entry(ix.FindPath("etc/localtime"))) == "/usr/share/zoneinfo/UTC");
  const IndexEntry& hard = ix.entry(ix.FindPath("etc/passwd-"));
  CHECK(hard.type == static_cast<uint8_t>(EntryType::kHardlink));
  CHECK(hard.data == ix.FindPath("etc/passwd"));
  const IndexEntry& lower = ix.entry(ix.FindPath("usr/bin/python3"));
  CHECK((lower.flags & kFlagLowerLink) != 0);
  CHECK(ix.link_target(lower) == "usr/bin/python3.11");
  const IndexEntry& null_dev = ix.entry(ix.FindPath("dev/null"));
  CHECK(null_dev.type == static_cast<uint8_t>(EntryType::kCharDevice));
  CHECK(null_dev.data == makedev(1, 3));
  CHECK(ix.entry(ix.FindPath("dev/sda")).data == makedev(8, 0));
  CHECK(ix.entry(ix.FindPath("run/fifo")).type == static_cast<uint8_t>(EntryType::kFifo));
  CHECK((ix.entry(ix.FindPath("var/cache")).flags & kFlagOpaque) != 0);
  CHECK(ix.entry(ix.FindPath("var/log")).type == static_cast<uint8_t>(EntryType::kWhiteout));
  CHECK(ix.entry(ix.FindPath("usr/share/doc/file19")).data == 4096 + 512 * 19);
}

TEST_CASE("layer_index: Open maps an index file and reads the same entries", "[index]") {
  testing::TempDir dir;
  const std::string bytes = RichIndexBytes(TestDigest());
  const std::string path = dir.Sub("x.idx");
  testing::WriteFile(path, bytes);
  auto opened = LayerIndex::Open(path);
  INFO(opened.status().message());
  REQUIRE(opened.ok());
  auto in_memory = LayerIndex::FromBytes(bytes);
  REQUIRE(in_memory.ok());
  REQUIRE(opened->entry_count() == in_memory->entry_count());
  CHECK(opened->file_size() == bytes.size());
  for (uint32_t i = 0; i < opened->entry_count(); ++i) {
    CHECK(opened->PathOf(i) == in_memory->PathOf(i));
    CHECK(std::memcmp(&opened->entry(i), &in_memory->entry(i), sizeof(IndexEntry)) == 0);
  }
}

TEST_CASE("layer_index: Open of a missing or corrupt file names the file", "[index]") {
  testing::TempDir dir;
  auto missing = LayerIndex::Open(dir.Sub("missing.idx"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ENOENT);
  CHECK_THAT(missing.status().message(), Catch::Contains("missing.idx"));

  std::string bytes = RichIndexBytes(TestDigest());
  bytes[300] ^= 1;
  testing::WriteFile(dir.Sub("bad.idx"), bytes);
  auto bad = LayerIndex::Open(dir.Sub("bad.idx"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == EIO);
  CHECK_THAT(bad.status().message(), Catch::Contains("bad.idx"));
  CHECK_THAT(bad.status().message(), Catch::Contains("checksum"));

  testing::WriteFile(dir.Sub("empty.idx"), "");
  auto empty = LayerIndex::Open(dir.Sub("empty.idx"));
  REQUIRE_FALSE(empty.ok());
  CHECK_THAT(empty.status().message(), Catch::Contains("empty.idx"));
}

TEST_CASE("layer_index: a truncated or extended index fails to open", "[index]") {
  const std::string bytes = RichIndexBytes(TestDigest());
  REQUIRE(LayerIndex::FromBytes(bytes).ok());
  for (size_t length = 0; length < bytes.size(); ++length) {
    auto index = LayerIndex::FromBytes(bytes.substr(0, length));
    INFO("length " << length);
    REQUIRE_FALSE(index.ok());
    REQUIRE(index.status().code() == EIO);
  }
  CheckRefused(bytes + std::string(8, '\0'), "8 bytes appended");
  // Truncated, with the header's file size and checksum made to agree: the sections no longer fit.
  std::string cut = bytes.substr(0, bytes.size() / 2);
  Poke<uint64_t>(&cut, offsetof(IndexHeader, file_size), cut.size());
  Reseal(&cut);
  CheckRefused(cut, "truncated and resealed");
}

TEST_CASE("layer_index: a single flipped bit anywhere fails to open", "[index]") {
  const std::string bytes = RichIndexBytes(TestDigest());
  size_t refused = 0;
  for (size_t byte = 0; byte < bytes.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[byte] = static_cast<char>(flipped[byte] ^ (1 << bit));
      auto index = LayerIndex::FromBytes(std::move(flipped));
      if (!index.ok() && index.status().code() == EIO) {
        ++refused;
      } else {
        FAIL_CHECK("bit " << bit << " of byte " << byte << " flipped, and the index opened");
      }
    }
  }
  CHECK(refused == bytes.size() * 8);
}

TEST_CASE("layer_index: a wrong magic fails to open", "[index]") {
  std::string bytes = RichIndexBytes(TestDigest());
  bytes[0] = 'X';
  Reseal(&bytes);
  auto index = LayerIndex::FromBytes(bytes);
  REQUIRE_FALSE(index.ok());
  CHECK(index.status().code() == EIO);
  CHECK_THAT(index.status().message(), Catch::Contains("magic"));
}

TEST_CASE("layer_index: a wrong version fails to open and says which", "[index]") {
  for (uint32_t version : {kIndexVersion + 1, kIndexVersion - 1, 0xffffffffu}) {
    std::string bytes = RichIndexBytes(TestDigest());
    Poke<uint32_t>(&bytes, offsetof(IndexHeader, version), version);
    Reseal(&bytes);
    auto index = LayerIndex::FromBytes(bytes);
    REQUIRE_FALSE(index.ok());
    CHECK(index.status().code() == EIO);
    CHECK_THAT(index.status().message(),
               Catch::Contains("format version " + std::to_string(version)));
  }
}

// The entry number of `path` in the valid rich index.
uint32_t EntryNumber(const std::string& bytes, std::string_view path) {
  auto index = LayerIndex::FromBytes(bytes);
  REQUIRE(index.ok());
  uint32_t id = index->FindPath(path);
  REQUIRE(id != kNoEntry);
  return id;
}

size_t EntryField(const std::string& bytes, uint32_t entry, size_t field) {
  return HeaderOf(bytes).entries_offset + entry * sizeof(IndexEntry) + field;
}

TEST_CASE("layer_index: fields that contradict the layout fail to open even when checksummed",
          "[index]") {
  const std::string good = RichIndexBytes(TestDigest());
  const IndexHeader h = HeaderOf(good);
  const uint32_t passwd = EntryNumber(good, "etc/passwd");
  const uint32_t etc = EntryNumber(good, "etc");
  const uint32_t doc = EntryNumber(good, "usr/share/doc");
  const uint32_t localtime = EntryNumber(good, "etc/localtime");
  const uint32_t hard = EntryNumber(good, "etc/passwd-");
  const uint32_t lower = EntryNumber(good, "usr/bin/python3");
  const uint32_t sparse = EntryNumber(good, "var/lib/sparse.img");
  const uint32_t last = h.entry_count - 1;

  struct Mutation {
    const char* what;
    std::function<void(std::string*)> apply;
  };
  auto header_field = [](size_t field, auto value) {
    return [=](std::string* b) { Poke(b, field, value); };
  };
  auto entry_field = [&](uint32_t entry, size_t field, auto value) {
    return [=, &good](std::string* b) { Poke(b, EntryField(good, entry, field), value); };
  };
  const std::vector<Mutation> mutations = {
      {"no entries", header_field(offsetof(IndexHeader, entry_count), uint32_t{0})},
      {"entry count past the file",
       header_field(offsetof(IndexHeader, entry_count), uint32_t{0xffffffff})},
      {"hash capacity not a power of two",
       header_field(offsetof(IndexHeader, hash_capacity), h.hash_capacity - 1)},
      {"hash capacity past the file",
       header_field(offsetof(IndexHeader, hash_capacity), uint32_t{1} << 30)},
      {"entries section past the file",
       header_field(offsetof(IndexHeader, entries_offset), h.file_size)},
      {"misaligned entries section",
       header_field(offsetof(IndexHeader, entries_offset), h.entries_offset + 4)},
      {"string area past the file", header_field(offsetof(IndexHeader, strings_size), h.file_size)},
      {"sparse words past the file",
       header_field(offsetof(IndexHeader, sparse_words), uint64_t{1} << 61)},
      {"xattr count past the file",
       header_field(offsetof(IndexHeader, xattr_count), uint32_t{0x7fffffff})},
      {"header size", header_field(offsetof(IndexHeader, header_size), uint32_t{128})},
      {"root not a directory", entry_field(kRootEntry, offsetof(IndexEntry, type),
                                           static_cast<uint8_t>(EntryType::kRegular))},
      {"root with a name", entry_field(kRootEntry, offsetof(IndexEntry, name_len), uint16_t{3})},
      {"parent is the entry itself", entry_field(passwd, offsetof(IndexEntry, parent), passwd)},
      {"parent is a later entry", entry_field(etc, offsetof(IndexEntry, parent), last)},
      {"parent is a file", entry_field(last, offsetof(IndexEntry, parent), passwd)},
      {"parent is another directory", entry_field(passwd, offsetof(IndexEntry, parent), doc)},
      {"name past the string area",
       entry_field(passwd, offsetof(IndexEntry, name_off), static_cast<uint32_t>(h.strings_size))},
      {"empty name", entry_field(passwd, offsetof(IndexEntry, name_len), uint16_t{0})},
      {"name longer than NAME_MAX",
       entry_field(passwd, offsetof(IndexEntry, name_len), uint16_t{256})},
      {"children past the entries", entry_field(etc, offsetof(IndexEntry, data), uint64_t{last})},
      {"one child too many", entry_field(etc, offsetof(IndexEntry, size), uint64_t{5})},
      {"children before the directory", entry_field(doc, offsetof(IndexEntry, data), uint64_t{1})},
      {"file data past the tar", entry_field(passwd, offsetof(IndexEntry, data), kTarSize - 50)},
      {"file size past the tar", entry_field(passwd, offsetof(IndexEntry, size), kTarSize)},
      {"symlink target past the strings",
       entry_field(localtime, offsetof(IndexEntry, size), h.strings_size)},
      {"hard link to an entry that does not exist",
       entry_field(hard, offsetof(IndexEntry, data), uint64_t{h.entry_count})},
      {"hard link to a directory", entry_field(hard, offsetof(IndexEntry, data), uint64_t{etc})},
      {"hard link to a hard link", entry_field(hard, offsetof(IndexEntry, data), uint64_t{hard})},
      {"lower link target past the strings",
       entry_field(lower, offsetof(IndexEntry, data), h.strings_size)},
      {"sparse map past the sparse words",
       entry_field(sparse, offsetof(IndexEntry, data), h.sparse_words)},
      {"sparse run past the tar",
       [&](std::string* b) {
         auto ix = LayerIndex::FromBytes(good);
         REQUIRE(ix.ok());
         uint64_t map = ix->entry(sparse).data;
         Poke(b, h.sparse_offset + (map + 3) * 8, kTarSize);  // first run's physical offset
       }},
      {"sparse run count past the sparse words",
       [&](std::string* b) {
         auto ix = LayerIndex::FromBytes(good);
         REQUIRE(ix.ok());
         Poke(b, h.sparse_offset + ix->entry(sparse).data * 8, uint64_t{1000});
       }},
      {"sparse run past the file size",
       entry_field(sparse, offsetof(IndexEntry, size), uint64_t{100})},
      {"xattrs past the xattr table",
       entry_field(passwd, offsetof(IndexEntry, xattr_first), h.xattr_count)},
      {"xattr name past the strings",
       [&](std::string* b) { Poke(b, h.xattrs_offset, static_cast<uint32_t>(h.strings_size)); }},
      {"xattr value past the strings",
       [&](std::string* b) {
         Poke(b, h.xattrs_offset + offsetof(IndexXattr, value_len), uint32_t{0xffffffff});
       }},
      {"unknown entry type", entry_field(passwd, offsetof(IndexEntry, type), uint8_t{0})},
      {"unknown entry type 200", entry_field(passwd, offsetof(IndexEntry, type), uint8_t{200})},
      {"directory turned into a whiteout",
       entry_field(etc, offsetof(IndexEntry, type), static_cast<uint8_t>(EntryType::kWhiteout))},
      {"hash slot past the entries",
       [&](std::string* b) { Poke(b, h.hash_offset, h.entry_count + 1); }},
  };
  for (const Mutation& m : mutations) {
    std::string bytes = good;
    m.apply(&bytes);
    REQUIRE(bytes != good);
    Reseal(&bytes);
    CheckRefused(bytes, m.what);
  }
}

// Everything a reader of a validated index may do; under the sanitizers, any read outside the
// index shows up here.
void UseEverything(const LayerIndex& ix) {
  for (uint32_t i = 0; i < ix.entry_count(); ++i) {
    const IndexEntry& e = ix.entry(i);
    std::string path = ix.PathOf(i);
    (void)ix.FindPath(path);
    (void)ix.FindChild(e.parent, ix.name(e));
    for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
      (void)ix.xattr_name(e, k).size();
      (void)ix.xattr_value(e, k).size();
    }
    switch (static_cast<EntryType>(e.type)) {
      case EntryType::kSymlink:
        (void)ix.link_target(e).size();
        break;
      case EntryType::kHardlink:
        if (e.flags & kFlagLowerLink) {
          (void)ix.link_target(e).size();
        } else {
          (void)ix.entry(static_cast<uint32_t>(e.data)).size;
        }
        break;
      case EntryType::kDirectory:
        for (uint32_t c = 0; c < ix.child_count(e); ++c) (void)ix.entry(ix.first_child(e) + c);
        break;
      case EntryType::kRegular:
        if (e.flags & kFlagSparse) {
          for (uint64_t k = 0; k < ix.sparse_run_count(e); ++k) (void)ix.sparse_run(e, k);
        }
        break;
      default:
        break;
    }
  }
}

TEST_CASE("layer_index: random checksummed damage never opens into an unsafe index", "[index]") {
  const std::string good = RichIndexBytes(TestDigest());
  const IndexHeader h = HeaderOf(good);
  std::mt19937 rng(20240601);
  int opened = 0;
  for (int round = 0; round < 5000; ++round) {
    std::string bytes = good;
    int changes = 1 + static_cast<int>(rng() % 4);
    for (int c = 0; c < changes; ++c) {
      // Mostly the header and entries, where the numbers that steer reads are.
      size_t limit = rng() % 4 == 0 ? bytes.size() : h.hash_offset;
      size_t pos = rng() % limit;
      if (pos >= offsetof(IndexHeader, checksum) && pos < offsetof(IndexHeader, checksum) + 8) {
        continue;
      }
      bytes[pos] = static_cast<char>(rng());
    }
    Reseal(&bytes);
    auto index = LayerIndex::FromBytes(bytes);
    if (index.ok()) {
      ++opened;
      UseEverything(*index);
    }
  }
  // Some changes are harmless (a name's bytes, a timestamp): those must still open.
  CHECK(opened > 0);
}

TEST_CASE("layer_index: an index whose sparse runs go backwards or overlap fails to open",
          "[index]") {
  // PlanRead (src/index/layer_data.cc) relies on runs in file order without overlap: with a run
  // that ends before the read position the planned segments would add up to more than the
  // caller's buffer. The builder refuses such a map, and the reader refuses an index holding one.
  for (const std::vector<SparseRun>& runs : {std::vector<SparseRun>{{100, 10, 0}, {0, 10, 512}},
                                             std::vector<SparseRun>{{0, 100, 0}, {50, 10, 512}}}) {
    EntryMaker m;
    TarEntry e = m.Make("bad", TarEntryType::kRegular);
    e.size = 200;
    e.sparse = runs;
    {
      IndexBuilder b;
      REQUIRE(b.Add(e).ok());
      auto refused = b.Finish(TestDigest(), 4096);
      REQUIRE_FALSE(refused.ok());
      CHECK_THAT(refused.status().message(), Catch::Contains("out of order"));
    }
    // The same map written into a valid index by hand.
    IndexBuilder b;
    e.sparse = {{0, 10, 0}, {100, 10, 512}};
    REQUIRE(b.Add(e).ok());
    auto bytes = b.Finish(TestDigest(), 4096);
    REQUIRE(bytes.ok());
    IndexHeader h = HeaderOf(*bytes);
    REQUIRE(h.sparse_words == 7);
    for (size_t k = 0; k < 2; ++k) {
      for (size_t f = 0; f < 3; ++f) {
        const uint64_t field = k == 0 ? (f == 0   ? runs[0].logical
                                         : f == 1 ? runs[0].length
                                                  : runs[0].physical)
                                      : (f == 0   ? runs[1].logical
                                         : f == 1 ? runs[1].length
                                                  : runs[1].physical);
        Poke(&*bytes, h.sparse_offset + 8 * (1 + 3 * k + f), field);
      }
    }
    Reseal(&*bytes);
    CheckRefused(*bytes, "runs out of order");
  }
}

}  // namespace
}  // namespace layerfs

namespace layerfs {
namespace {

// An index with checkpoints, as IndexBuilder writes it for a layer served in place.
std::string IndexWithCheckpoints(IndexCodec codec) {
  IndexBuilder builder;
  TarEntry e{};
  e.path = "big";
  e.type = TarEntryType::kRegular;
  e.mode = 0644;
  e.size = 5000;
  e.data_offset = 512;
  REQUIRE(builder.Add(e).ok());
  CheckpointList list;
  list.codec = codec;
  list.span = kMinSpan;
  for (uint64_t k = 0; k < 3; ++k) {
    Checkpoint c;
    c.out = k * 1500;
    c.in = k * 700;
    if (codec == kIndexCodecGzip && k > 0) {
      c.bits = 3;
      c.window_raw = 1500;
      c.window = std::string(40, 'w');
    }
    list.points.push_back(c);
  }
  IndexBuilder::InPlace in_place{&list, TestDigest(), 3000};
  auto bytes = builder.Finish(TestDigest(), 6144, &in_place);
  REQUIRE(bytes.ok());
  return std::move(bytes).value();
}

TEST_CASE("layer_index: checkpoints round-trip, and damaged ones fail to open", "[index]") {
  const std::string good = IndexWithCheckpoints(kIndexCodecGzip);
  auto index = LayerIndex::FromBytes(good);
  INFO(index.status().message());
  REQUIRE(index.ok());
  CHECK(index->codec() == kIndexCodecGzip);
  CHECK(index->blob_size() == 3000);
  CHECK(index->blob_digest() == TestDigest());
  CHECK(index->span() == kMinSpan);
  const CheckpointTable table = index->checkpoints();
  REQUIRE(table.count == 3);
  CHECK(table.points[2].out_offset == 3000);
  CHECK(table.points[2].bits == 3);
  CHECK(std::string(table.windows + table.points[2].window_offset, table.points[2].window_size) ==
        std::string(40, 'w'));

  const IndexHeader h = HeaderOf(good);
  const size_t at = h.checkpoints_offset;
  constexpr size_t kPoint = sizeof(IndexCheckpoint);
  auto refused = [&](const char* what, const std::function<void(std::string*)>& damage) {
    std::string bad = good;
    damage(&bad);
    Reseal(&bad);
    CheckRefused(bad, what);
    CHECK_THAT(LayerIndex::FromBytes(bad).status().message(), Catch::Contains("checkpoint"));
  };
  refused("first not at 0", [&](std::string* b) {
    Poke<uint64_t>(b, at + offsetof(IndexCheckpoint, out_offset), 1);
  });
  refused("not increasing", [&](std::string* b) {
    Poke<uint64_t>(b, at + kPoint + offsetof(IndexCheckpoint, out_offset), 3000);
  });
  refused("compressed offsets decreasing", [&](std::string* b) {
    Poke<uint64_t>(b, at + kPoint + offsetof(IndexCheckpoint, in_offset), 1500);
  });
  refused("past the end of the tar", [&](std::string* b) {
    Poke<uint64_t>(b, at + 2 * kPoint + offsetof(IndexCheckpoint, out_offset), 6144);
  });
  refused("past the blob", [&](std::string* b) {
    Poke<uint64_t>(b, at + 2 * kPoint + offsetof(IndexCheckpoint, in_offset), 3001);
  });
  refused("bits out of range", [&](std::string* b) {
    Poke<uint8_t>(b, at + kPoint + offsetof(IndexCheckpoint, bits), 8);
  });
  refused("window of the wrong size", [&](std::string* b) {
    Poke<uint16_t>(b, at + kPoint + offsetof(IndexCheckpoint, window_raw), kWindowMax + 1);
  });
  refused("window outside its area", [&](std::string* b) {
    Poke<uint64_t>(b, at + kPoint + offsetof(IndexCheckpoint, window_offset), 1u << 20);
  });
  refused("section out of bounds", [&](std::string* b) {
    Poke<uint32_t>(b, offsetof(IndexHeader, checkpoint_count), 1u << 30);
  });
  refused("unknown codec",
          [&](std::string* b) { Poke<uint32_t>(b, offsetof(IndexHeader, codec), 7); });
  refused("a zstd checkpoint with a window", [&](std::string* b) {
    Poke<uint32_t>(b, offsetof(IndexHeader, codec), kIndexCodecZstd);
  });
  refused("checkpoints for a layer served from a file", [&](std::string* b) {
    Poke<uint32_t>(b, offsetof(IndexHeader, codec), kIndexCodecNone);
  });
  CHECK(LayerIndex::FromBytes(IndexWithCheckpoints(kIndexCodecZstd)).ok());
}

}  // namespace
}  // namespace layerfs
