#include "tar/tar_reader.h"

#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "blob/sha256.h"
#include "index/layer_data.h"
#include "tests/util/layer_checks.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::MustIndex;
using testing::EntryAt;
using testing::Content;

using testing::RandomBytes;
using testing::TarFormat;
using testing::TarSpec;
using testing::TarWriter;
using testing::UstarHeader;

// A TarEntry with its views copied, so that it outlives the ReadTar callback.
struct ReadBackEntry {
  std::string path;
  TarEntryType type;
  uint32_t mode;
  uint32_t uid;
  uint32_t gid;
  int64_t mtime_sec;
  uint32_t mtime_nsec;
  uint64_t size;
  uint64_t data_offset;
  std::string link_target;
  uint32_t rdev_major;
  uint32_t rdev_minor;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<SparseRun> sparse;
  uint64_t index;
};

Result<std::vector<ReadBackEntry>> ReadEntries(const std::string& blob,
                                               Compression compression = Compression::kNone) {
  UniqueFd fd = testing::TempFileWith(blob);
  std::vector<ReadBackEntry> out;
  TarReadOptions options;
  options.compression = compression;
  auto stats = ReadTar(fd.get(), 0, blob.size(), "test.tar", options, [&](const TarEntry& e) {
    ReadBackEntry r;
    r.path = e.path;
    r.type = e.type;
    r.mode = e.mode;
    r.uid = e.uid;
    r.gid = e.gid;
    r.mtime_sec = e.mtime_sec;
    r.mtime_nsec = e.mtime_nsec;
    r.size = e.size;
    r.data_offset = e.data_offset;
    r.link_target = e.link_target;
    r.rdev_major = e.rdev_major;
    r.rdev_minor = e.rdev_minor;
    for (const auto& [name, value] : e.xattrs) r.xattrs.emplace_back(name, value);
    r.sparse = e.sparse;
    r.index = e.index;
    out.push_back(std::move(r));
    return Status::Ok();
  });
  if (!stats.ok()) return stats.status();
  return out;
}

std::vector<ReadBackEntry> MustRead(const std::string& blob) {
  auto entries = ReadEntries(blob);
  INFO(entries.status().message());
  REQUIRE(entries.ok());
  return std::move(entries).value();
}

std::string ReadFd(int fd) {
  std::string out;
  char buf[65536];
  for (off_t off = 0;;) {
    ssize_t n = ::pread(fd, buf, sizeof(buf), off);
    REQUIRE(n >= 0);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
}

std::string PaddedData(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

const std::string kEndOfArchive(1024, '\0');

// Comparisons of binary content are written CHECK((a == b)) so that a failure does not print
// the bytes.

// --- Features, entry by entry --------------------------------------------------------------

TEST_CASE("tar: regular files are read with their size, data offset and content", "[tar]") {
  const std::string big = RandomBytes(300000, 1);
  for (TarFormat format : {TarFormat::kPax, TarFormat::kGnu, TarFormat::kUstar}) {
    INFO("format " << static_cast<int>(format));
    std::string tar = TarWriter(format)
                          .File("empty", "")
                          .File("small", "hello\n", 0600)
                          .File("big.bin", big)
                          .Finish();
    auto entries = MustRead(tar);
    REQUIRE(entries.size() == 3);
    CHECK(entries[1].path == "small");
    CHECK(entries[1].type == TarEntryType::kRegular);
    CHECK(entries[1].size == 6);
    CHECK(entries[1].mode == 0600);
    CHECK(tar.substr(entries[1].data_offset, 6) == "hello\n");
    CHECK(entries[2].size == big.size());
    CHECK((tar.substr(entries[2].data_offset, big.size()) == big));
    CHECK(entries[2].index == 2);

    Layer layer = MustIndex(tar);
    CHECK(Content(layer, "empty").empty());
    CHECK(Content(layer, "small") == "hello\n");
    CHECK((Content(layer, "big.bin") == big));
    // Reads that start and end at odd places inside the file.
    CHECK((testing::ReadPath(layer, "big.bin", 4093).value() == big));
    char buf[10];
    auto n = ReadEntry(layer, EntryAt(layer, "big.bin"), big.size() - 4, buf, sizeof(buf));
    REQUIRE(n.ok());
    CHECK((std::string(buf, *n) == big.substr(big.size() - 4)));
  }
}

TEST_CASE("tar: directories are read as directories with their metadata", "[tar]") {
  TarSpec dir;
  dir.path = "var/log/";
  dir.type = TarSpec::Type::kDir;
  dir.mode = 0750;
  dir.uid = 33;
  dir.gid = 4;
  auto entries = MustRead(TarWriter().Add(dir).Finish());
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].type == TarEntryType::kDirectory);
  CHECK(entries[0].size == 0);

  Layer layer = MustIndex(TarWriter().Add(dir).Finish());
  const IndexEntry& e = EntryAt(layer, "var/log");
  CHECK(e.type == static_cast<uint8_t>(EntryType::kDirectory));
  CHECK(e.mode == 0750);
  CHECK(e.uid == 33);
  CHECK(e.gid == 4);
  CHECK((e.flags & kFlagImplied) == 0);
}

TEST_CASE("tar: symlinks keep their target exactly as stored", "[tar]") {
  std::string tar = TarWriter()
                        .Symlink("usr/bin/python", "python3.11")
                        .Symlink("lib", "usr/lib")
                        .Symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC")
                        .Symlink("up", "../../..")
                        .Finish();
  auto entries = MustRead(tar);
  REQUIRE(entries.size() == 4);
  CHECK(entries[0].type == TarEntryType::kSymlink);
  CHECK(entries[0].link_target == "python3.11");

  Layer layer = MustIndex(tar);
  const IndexEntry& tz = EntryAt(layer, "etc/localtime");
  CHECK(tz.type == static_cast<uint8_t>(EntryType::kSymlink));
  CHECK(layer.index.link_target(tz) == "/usr/share/zoneinfo/Etc/UTC");
  CHECK(tz.size == std::string("/usr/share/zoneinfo/Etc/UTC").size());
  // A symlink target is never normalised: "../../.." is the link's business, not the index's.
  CHECK(layer.index.link_target(EntryAt(layer, "up")) == "../../..");
  CHECK(layer.index.link_target(EntryAt(layer, "lib")) == "usr/lib");
}

TEST_CASE("tar: hard links are read with their target path as stored", "[tar]") {
  auto entries = MustRead(TarWriter().File("bin/a", "A").Hardlink("bin/b", "bin/a").Finish());
  REQUIRE(entries.size() == 2);
  CHECK(entries[1].type == TarEntryType::kHardlink);
  CHECK(entries[1].link_target == "bin/a");
  CHECK(entries[1].size == 0);
}

TEST_CASE("tar: character and block devices keep their major and minor numbers", "[tar]") {
  TarSpec null_dev;
  null_dev.path = "dev/null";
  null_dev.type = TarSpec::Type::kChar;
  null_dev.mode = 0666;
  null_dev.major = 1;
  null_dev.minor = 3;
  TarSpec disk;
  disk.path = "dev/nvme0n1p2";
  disk.type = TarSpec::Type::kBlock;
  disk.mode = 0660;
  disk.major = 259;
  disk.minor = 70000;  // above 255: needs the full minor range
  for (TarFormat format : {TarFormat::kPax, TarFormat::kGnu}) {
    INFO("format " << static_cast<int>(format));
    std::string tar = TarWriter(format).Add(null_dev).Add(disk).Finish();
    auto entries = MustRead(tar);
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].type == TarEntryType::kCharDevice);
    CHECK(entries[0].rdev_major == 1);
    CHECK(entries[0].rdev_minor == 3);
    CHECK(entries[1].type == TarEntryType::kBlockDevice);
    CHECK(entries[1].rdev_major == 259);
    CHECK(entries[1].rdev_minor == 70000);

    Layer layer = MustIndex(tar);
    const IndexEntry& c = EntryAt(layer, "dev/null");
    CHECK(c.type == static_cast<uint8_t>(EntryType::kCharDevice));
    CHECK(c.mode == 0666);
    CHECK(major(static_cast<dev_t>(c.data)) == 1);
    CHECK(minor(static_cast<dev_t>(c.data)) == 3);
    const IndexEntry& b = EntryAt(layer, "dev/nvme0n1p2");
    CHECK(b.type == static_cast<uint8_t>(EntryType::kBlockDevice));
    CHECK(major(static_cast<dev_t>(b.data)) == 259);
    CHECK(minor(static_cast<dev_t>(b.data)) == 70000);
  }
}

TEST_CASE("tar: fifos are read as fifos", "[tar]") {
  TarSpec fifo;
  fifo.path = "run/initctl";
  fifo.type = TarSpec::Type::kFifo;
  fifo.mode = 0600;
  std::string tar = TarWriter().Add(fifo).Finish();
  auto entries = MustRead(tar);
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].type == TarEntryType::kFifo);
  Layer layer = MustIndex(tar);
  const IndexEntry& e = EntryAt(layer, "run/initctl");
  CHECK(e.type == static_cast<uint8_t>(EntryType::kFifo));
  CHECK(e.mode == 0600);
}

TEST_CASE("tar: setuid, setgid and sticky bits are kept", "[tar]") {
  std::string tar = TarWriter()
                        .File("usr/bin/passwd", "x", 04755)
                        .File("usr/bin/wall", "x", 02755)
                        .File("usr/bin/both", "x", 06711)
                        .Dir("tmp", 01777)
                        .Dir("srv/shared", 02775)
                        .Finish();
  auto entries = MustRead(tar);
  REQUIRE(entries.size() == 5);
  CHECK(entries[0].mode == 04755);
  CHECK(entries[3].mode == 01777);
  Layer layer = MustIndex(tar);
  CHECK(EntryAt(layer, "usr/bin/passwd").mode == 04755);
  CHECK(EntryAt(layer, "usr/bin/wall").mode == 02755);
  CHECK(EntryAt(layer, "usr/bin/both").mode == 06711);
  CHECK(EntryAt(layer, "tmp").mode == 01777);
  CHECK(EntryAt(layer, "srv/shared").mode == 02775);
}

TEST_CASE("tar: owners are kept, including ids too large for a ustar field", "[tar]") {
  TarSpec small;
  small.path = "home/user/file";
  small.uid = 1000;
  small.gid = 100;
  TarSpec large;
  large.path = "large";
  large.uid = 3000000000u;  // above 2^31 and above the 7-digit octal field
  large.gid = 123456789;
  for (TarFormat format : {TarFormat::kPax, TarFormat::kGnu}) {
    INFO("format " << static_cast<int>(format));
    std::string tar = TarWriter(format).Add(small).Add(large).Finish();
    auto entries = MustRead(tar);
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].uid == 1000);
    CHECK(entries[0].gid == 100);
    CHECK(entries[1].uid == 3000000000u);
    CHECK(entries[1].gid == 123456789u);
    Layer layer = MustIndex(tar);
    CHECK(EntryAt(layer, "home/user/file").uid == 1000);
    CHECK(EntryAt(layer, "large").uid == 3000000000u);
    CHECK(EntryAt(layer, "large").gid == 123456789u);
  }
}

TEST_CASE("tar: PAX mtimes keep their nanoseconds, and times before 1970", "[tar]") {
  TarSpec precise;
  precise.path = "precise";
  precise.mtime = 1700000123;
  precise.mtime_nsec = 123456789;
  TarSpec old;
  old.path = "old";
  old.mtime = -86400;  // 1969-12-31
  TarSpec dir;
  dir.path = "dir";
  dir.type = TarSpec::Type::kDir;
  dir.mtime = 1600000000;
  dir.mtime_nsec = 999999999;
  std::string tar = TarWriter(TarFormat::kPax).Add(precise).Add(old).Add(dir).Finish();
  auto entries = MustRead(tar);
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].mtime_sec == 1700000123);
  CHECK(entries[0].mtime_nsec == 123456789);
  Layer layer = MustIndex(tar);
  CHECK(EntryAt(layer, "precise").mtime_sec == 1700000123);
  CHECK(EntryAt(layer, "precise").mtime_nsec == 123456789);
  CHECK(EntryAt(layer, "old").mtime_sec == -86400);
  CHECK(EntryAt(layer, "old").mtime_nsec == 0);
  CHECK(EntryAt(layer, "dir").mtime_sec == 1600000000);
  CHECK(EntryAt(layer, "dir").mtime_nsec == 999999999);
}

TEST_CASE("tar: GNU tars keep whole-second mtimes", "[tar]") {
  TarSpec f;
  f.path = "f";
  f.mtime = 1234567890;
  f.mtime_nsec = 500;
  Layer layer = MustIndex(TarWriter(TarFormat::kGnu).Add(f).Finish());
  CHECK(EntryAt(layer, "f").mtime_sec == 1234567890);
  CHECK(EntryAt(layer, "f").mtime_nsec == 0);
}

// Paths longer than the 100-byte ustar name field, with components within NAME_MAX.
struct LongNames {
  std::string dir = std::string(120, 'd') + "/" + std::string(150, 'e');
  std::string file = dir + "/" + std::string(200, 'f') + ".txt";
  std::string link = dir + "/" + std::string(180, 'l');
  std::string hardlink = std::string(230, 'h');
  std::string link_target = "../" + std::string(250, 't') + "/" + std::string(140, 'u');
};

void CheckLongNames(TarFormat format) {
  LongNames n;
  std::string tar = TarWriter(format)
                        .File(n.file, "long")
                        .Symlink(n.link, n.link_target)
                        .Hardlink(n.hardlink, n.file)
                        .Finish();
  auto entries = MustRead(tar);
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].path == n.file);
  CHECK(entries[1].path == n.link);
  CHECK(entries[1].link_target == n.link_target);
  CHECK(entries[2].path == n.hardlink);
  CHECK(entries[2].link_target == n.file);

  Layer layer = MustIndex(tar);
  CHECK(Content(layer, n.file) == "long");
  CHECK(layer.index.link_target(EntryAt(layer, n.link)) == n.link_target);
  const IndexEntry& h = EntryAt(layer, n.hardlink);
  REQUIRE(h.type == static_cast<uint8_t>(EntryType::kHardlink));
  CHECK((h.flags & kFlagLowerLink) == 0);
  CHECK(layer.index.PathOf(static_cast<uint32_t>(h.data)) == n.file);
}

TEST_CASE("tar: long names and link targets in GNU format (longname/longlink)", "[tar]") {
  CheckLongNames(TarFormat::kGnu);
}

TEST_CASE("tar: long names and link targets in PAX format (path/linkpath)", "[tar]") {
  CheckLongNames(TarFormat::kPax);
}

TEST_CASE("tar: ustar tars split paths up to 255 bytes into prefix and name", "[tar]") {
  const std::string path = std::string(140, 'p') + "/" + std::string(90, 'n');
  std::string tar = TarWriter(TarFormat::kUstar).File(path, "split").Finish();
  auto entries = MustRead(tar);
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].path == path);
  CHECK(Content(MustIndex(tar), path) == "split");
}

TEST_CASE("tar: names with spaces, newlines and UTF-8 are kept byte for byte", "[tar]") {
  const std::string spaced = "Program Files/My App/read me.txt";
  const std::string newline = "odd\nname";
  const std::string utf8_dir = "caf\xc3\xa9";
  const std::string utf8 = utf8_dir + "/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.txt";
  const std::string emoji_target = "\xf0\x9f\x90\xb3";
  for (TarFormat format : {TarFormat::kPax, TarFormat::kGnu}) {
    INFO("format " << static_cast<int>(format));
    std::string tar = TarWriter(format)
                          .File(spaced, "spaces")
                          .File(newline, "newline")
                          .File(utf8, "utf8")
                          .Symlink("whale", emoji_target)
                          .Finish();
    auto entries = MustRead(tar);
    REQUIRE(entries.size() == 4);
    CHECK(entries[0].path == spaced);
    CHECK(entries[1].path == newline);
    CHECK(entries[2].path == utf8);
    CHECK(entries[3].link_target == emoji_target);

    Layer layer = MustIndex(tar);
    CHECK(Content(layer, spaced) == "spaces");
    CHECK(Content(layer, newline) == "newline");
    CHECK(Content(layer, utf8) == "utf8");
    CHECK(layer.index.name(EntryAt(layer, utf8_dir)) == utf8_dir);
    CHECK(layer.index.link_target(EntryAt(layer, "whale")) == emoji_target);
  }
}

TEST_CASE("tar: a UTF-8 name does not stop the reading of later entries", "[tar]") {
  // In the C locale libarchive reports such a name with ARCHIVE_WARN (NOTES.md): the entries after
  // it must still be read.
  std::string tar = TarWriter(TarFormat::kPax)
                        .File("before", "1")
                        .File("\xc3\xbc\x62\x65r", "2")
                        .File("after", "3")
                        .Finish();
  Layer layer = MustIndex(tar);
  CHECK(Content(layer, "before") == "1");
  CHECK(Content(layer, "\xc3\xbc\x62\x65r") == "2");
  CHECK(Content(layer, "after") == "3");
}

// An entry with xattrs, as libarchive's PAX writer stores them: each twice, once as a
// LIBARCHIVE.xattr record (base64) and once as a SCHILY.xattr record (raw), the way bsdtar does.
struct XattrTar {
  // VFS_CAP_REVISION_2 with CAP_NET_BIND_SERVICE permitted: NUL bytes inside the value.
  const std::string capability{
      "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00",
      20};
  const std::string binary{"\x00\xff\n=\x7f", 5};
  std::string tar;

  XattrTar() {
    TarSpec f;
    f.path = "usr/bin/ping";
    f.content = "ELF";
    f.mode = 0755;
    f.xattrs = {{"security.capability", capability},
                {"user.comment", "hello world"},
                {"user.binary", binary}};
    TarSpec d;
    d.path = "data";
    d.type = TarSpec::Type::kDir;
    d.xattrs = {{"user.dir", "on a directory"}};
    tar = TarWriter(TarFormat::kPax).Add(f).Add(d).Finish();
  }
};

std::multimap<std::string, std::string> XattrsOf(const Layer& layer, std::string_view path) {
  const IndexEntry& e = EntryAt(layer, path);
  std::multimap<std::string, std::string> out;
  for (uint16_t k = 0; k < layer.index.xattr_count(e); ++k) {
    out.emplace(layer.index.xattr_name(e, k), layer.index.xattr_value(e, k));
  }
  return out;
}

std::set<std::string> Names(const std::multimap<std::string, std::string>& xattrs) {
  std::set<std::string> names;
  for (const auto& [name, value] : xattrs) names.insert(name);
  return names;
}

TEST_CASE("tar: xattrs keep binary values (security.capability, user.*)", "[tar]") {
  XattrTar x;
  Layer layer = MustIndex(x.tar);
  auto ping = XattrsOf(layer, "usr/bin/ping");
  CHECK(Names(ping) == std::set<std::string>{"security.capability", "user.binary", "user.comment"});
  for (const auto& [name, value] : ping) {
    INFO(name);
    if (name == "security.capability") CHECK(value == x.capability);
    if (name == "user.binary") CHECK(value == x.binary);
    if (name == "user.comment") CHECK(value == "hello world");
  }
  auto data = XattrsOf(layer, "data");
  CHECK(Names(data) == std::set<std::string>{"user.dir"});
  CHECK(data.find("user.dir")->second == "on a directory");
  CHECK(Content(layer, "usr/bin/ping") == "ELF");
}

TEST_CASE("tar: an xattr stored as both LIBARCHIVE.xattr and SCHILY.xattr is listed once",
          "[tar]") {
  // libarchive writes each xattr as both LIBARCHIVE.xattr.* and SCHILY.xattr.* and its reader
  // reports both; listxattr must show each name once. (GNU tar and Go write SCHILY only.)
  XattrTar x;
  auto entries = MustRead(x.tar);
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].xattrs.size() == 3);
  Layer layer = MustIndex(x.tar);
  CHECK(layer.index.xattr_count(EntryAt(layer, "usr/bin/ping")) == 3);
  CHECK(layer.index.xattr_count(EntryAt(layer, "data")) == 1);
}

// --- The pass over the blob ------------------------------------------------------------------

TEST_CASE("tar: gzip and zstd layers are hashed as stored and as tar, and copied uncompressed",
          "[tar]") {
  const std::string content = RandomBytes(200000, 2);
  const std::string tar = TarWriter().Dir("d").File("d/data", content).File("d/x", "x").Finish();
  struct Case {
    Compression compression;
    std::string blob;
  };
  for (const Case& c : {Case{Compression::kGzip, testing::Gzip(tar)},
                        Case{Compression::kZstd, testing::Zstd(tar)}}) {
    INFO(CompressionName(c.compression));
    REQUIRE(c.blob != tar);
    UniqueFd blob_fd = testing::TempFileWith(c.blob);
    UniqueFd copy_fd = testing::TempFileWith("");
    Sha256 blob_hash;
    Sha256 tar_hash;
    TarReadOptions options;
    options.compression = c.compression;
    options.blob_hash = &blob_hash;
    options.tar_hash = &tar_hash;
    options.copy_fd = copy_fd.get();
    std::vector<std::pair<std::string, uint64_t>> offsets;
    auto stats =
        ReadTar(blob_fd.get(), 0, c.blob.size(), "layer.tar.gz", options, [&](const TarEntry& e) {
          offsets.emplace_back(std::string(e.path), e.data_offset);
          return Status::Ok();
        });
    INFO(stats.status().message());
    REQUIRE(stats.ok());
    CHECK(stats->entries == 3);
    CHECK(stats->blob_bytes == c.blob.size());
    CHECK(stats->tar_bytes == tar.size());
    CHECK(blob_hash.Finish() == testing::Sha256Of(c.blob));
    CHECK(tar_hash.Finish() == testing::Sha256Of(tar));
    CHECK((ReadFd(copy_fd.get()) == tar));
    // Data offsets are offsets in the uncompressed tar.
    REQUIRE(offsets.size() == 3);
    CHECK((tar.substr(offsets[1].second, content.size()) == content));
  }
}

TEST_CASE("tar: a gzip or zstd layer made of several members reads as one tar", "[tar]") {
  // pigz and pzstd write several members or frames; each decompresses to a piece of the tar.
  const std::string content = RandomBytes(50000, 9);
  const std::string tar = TarWriter().File("a", content).File("b", "second").Finish();
  const size_t cut = 20000;  // inside a's data
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    INFO(CompressionName(c));
    auto compress = c == Compression::kGzip ? testing::Gzip : testing::Zstd;
    const std::string blob = compress(tar.substr(0, cut)) + compress(tar.substr(cut));
    UniqueFd fd = testing::TempFileWith(blob);
    Sha256 tar_hash;
    TarReadOptions options;
    options.compression = c;
    options.tar_hash = &tar_hash;
    std::vector<std::string> paths;
    auto stats = ReadTar(fd.get(), 0, blob.size(), "multi", options, [&](const TarEntry& e) {
      paths.emplace_back(e.path);
      return Status::Ok();
    });
    INFO(stats.status().message());
    REQUIRE(stats.ok());
    CHECK(paths == std::vector<std::string>{"a", "b"});
    CHECK(stats->tar_bytes == tar.size());
    CHECK(tar_hash.Finish() == testing::Sha256Of(tar));
  }
}

TEST_CASE("tar: the hash of an uncompressed layer covers the padding after the end marker",
          "[tar]") {
  // Bytes after the end-of-archive blocks are part of the blob and of its digest.
  const std::string blob = TarWriter().File("f", "data").Finish() + std::string(3000, 'x');
  UniqueFd fd = testing::TempFileWith(blob);
  Sha256 hash;
  TarReadOptions options;
  options.blob_hash = &hash;
  options.tar_hash = &hash;
  auto stats = ReadTar(fd.get(), 0, blob.size(), "padded.tar", options,
                       [](const TarEntry&) { return Status::Ok(); });
  REQUIRE(stats.ok());
  CHECK(stats->entries == 1);
  CHECK(stats->blob_bytes == blob.size());
  CHECK(stats->tar_bytes == blob.size());
  CHECK(hash.Finish() == testing::Sha256Of(blob));
}

TEST_CASE("tar: a tar inside a larger file is read from its range only", "[tar]") {
  const std::string tar = TarWriter().File("inner", "in range").Finish();
  const std::string file = std::string(1000, 'A') + tar + std::string(777, 'Z');
  UniqueFd fd = testing::TempFileWith(file);
  Sha256 hash;
  TarReadOptions options;
  options.blob_hash = &hash;
  uint64_t data_offset = 0;
  auto stats =
      ReadTar(fd.get(), 1000, tar.size(), "image.tar:layer.tar", options, [&](const TarEntry& e) {
        data_offset = e.data_offset;
        return Status::Ok();
      });
  REQUIRE(stats.ok());
  CHECK(stats->blob_bytes == tar.size());
  CHECK(hash.Finish() == testing::Sha256Of(tar));
  CHECK(tar.substr(data_offset, 8) == "in range");
}

TEST_CASE("tar: an empty tar (only end-of-archive blocks) and an empty blob have no entries",
          "[tar]") {
  auto zero_blocks = ReadEntries(kEndOfArchive);
  REQUIRE(zero_blocks.ok());
  CHECK(zero_blocks->empty());
  auto empty = ReadEntries("");
  REQUIRE(empty.ok());
  CHECK(empty->empty());
  auto layer = testing::IndexTar(kEndOfArchive);
  REQUIRE(layer.ok());
  CHECK(layer->index.entry_count() == 1);  // the root alone
}

TEST_CASE("tar: an error from the visitor stops the pass and is returned", "[tar]") {
  std::string tar = TarWriter().File("a", "1").File("b", "2").File("c", "3").Finish();
  UniqueFd fd = testing::TempFileWith(tar);
  int seen = 0;
  auto stats = ReadTar(fd.get(), 0, tar.size(), "t.tar", {}, [&](const TarEntry& e) {
    ++seen;
    if (e.path == "b") return Status::Invalid("stop at b");
    return Status::Ok();
  });
  REQUIRE_FALSE(stats.ok());
  CHECK(stats.status().message() == "stop at b");
  CHECK(seen == 2);
}

// --- Bad input -------------------------------------------------------------------------------

TEST_CASE("tar: a tar cut inside a file's data is an error naming the blob", "[tar]") {
  std::string tar = TarWriter().File("first", "1").File("cut", RandomBytes(5000, 3)).Finish();
  auto entries = MustRead(tar);
  REQUIRE(entries.size() == 2);
  std::string truncated = tar.substr(0, entries[1].data_offset + 2000);
  auto r = ReadEntries(truncated);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EIO);
  CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
}

TEST_CASE("tar: a tar cut inside a header is an error naming the blob", "[tar]") {
  std::string tar = TarWriter(TarFormat::kUstar).File("a", "1").File("b", "2").Finish();
  // a: header + one data block; b's header starts at 1024.
  auto r = ReadEntries(tar.substr(0, 1024 + 300));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EIO);
  CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
}

TEST_CASE("tar: a truncated tar error names the entry whose data is cut", "[tar]") {
  std::string tar =
      TarWriter().File("first", "1").File("victim.bin", RandomBytes(5000, 4)).Finish();
  auto entries = MustRead(tar);
  auto r = ReadEntries(tar.substr(0, entries[1].data_offset + 100));
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("victim.bin"));
}

TEST_CASE("tar: a bad checksum in the first header is an error", "[tar]") {
  std::string tar = TarWriter(TarFormat::kUstar).File("a", "1").Finish();
  tar[0] = 'b';  // the name changes, the stored checksum does not
  auto r = ReadEntries(tar);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EIO);
  CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
  CHECK_THAT(r.status().message(), Catch::Contains("not a tar archive"));
}

TEST_CASE("tar: a bad checksum in a later header is an error naming where it is", "[tar]") {
  std::string tar = TarWriter(TarFormat::kUstar).File("a", "1").File("b", "2").Finish();
  tar[1024] = 'c';
  auto r = ReadEntries(tar);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EIO);
  CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
  CHECK_THAT(r.status().message(), Catch::Contains("after entry 0 \"a\""));
}

TEST_CASE("tar: data that is not a tar is an error", "[tar]") {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "this is not a tar archive, just text\n";
  for (const std::string& garbage : {text, RandomBytes(4096, 5), std::string("short")}) {
    auto r = ReadEntries(garbage);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == EIO);
    CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
  }
}

TEST_CASE("tar: an entry size running past the end of the blob is an error", "[tar]") {
  // 1 MiB declared, 512 bytes present, no end-of-archive blocks.
  std::string blob = UstarHeader("big", '0', 1 << 20) + std::string(512, 'x');
  auto r = ReadEntries(blob);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EIO);
  CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
  // A well-formed header after data that is too short must not be read as an entry either.
  std::string two = UstarHeader("a", '0', 4096) + PaddedData("abc") + UstarHeader("b", '0', 1) +
                    PaddedData("b") + kEndOfArchive;
  auto r2 = ReadEntries(two);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.status().code() == EIO);
}

TEST_CASE("tar: a blob shorter than the range the image declares is an error", "[tar]") {
  std::string tar = TarWriter().File("f", "data").Finish();
  UniqueFd fd = testing::TempFileWith(tar);
  auto r = ReadTar(fd.get(), 0, tar.size() + 4096, "short.tar", {},
                   [](const TarEntry&) { return Status::Ok(); });
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EIO);
  CHECK_THAT(r.status().message(), Catch::Contains("short.tar"));
  CHECK_THAT(r.status().message(), Catch::Contains("shorter"));
}

TEST_CASE("tar: a layer that is not compressed the way the image says is an error", "[tar]") {
  const std::string tar = TarWriter().File("f", "data").Finish();
  struct Case {
    std::string blob;
    Compression says;
    const char* expected;
  };
  for (const Case& c : {Case{tar, Compression::kGzip, "not gzip-compressed"},
                        Case{tar, Compression::kZstd, "not zstd-compressed"},
                        Case{testing::Zstd(tar), Compression::kGzip, "not gzip-compressed"},
                        Case{testing::Gzip(tar), Compression::kZstd, "not zstd-compressed"}}) {
    INFO(c.expected);
    auto r = ReadEntries(c.blob, c.says);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == EIO);
    CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
    CHECK_THAT(r.status().message(), Catch::Contains(c.expected));
  }
}

TEST_CASE("tar: a truncated gzip or zstd layer is an error", "[tar]") {
  const std::string tar = TarWriter().File("f", RandomBytes(100000, 6)).Finish();
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    INFO(CompressionName(c));
    std::string blob = c == Compression::kGzip ? testing::Gzip(tar) : testing::Zstd(tar);
    auto r = ReadEntries(blob.substr(0, blob.size() / 2), c);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == EIO);
    CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
  }
}

TEST_CASE("tar: a compressed layer whose content is not a tar is an error", "[tar]") {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "compressed, but not a tar\n";
  auto r = ReadEntries(testing::Gzip(text), Compression::kGzip);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == EIO);
  CHECK_THAT(r.status().message(), Catch::Contains("test.tar"));
}


// A PAX extended header ('x') holding `records` (key, value), with correct record lengths.
std::string PaxHeader(const std::vector<std::pair<std::string, std::string>>& records) {
  std::string body;
  for (const auto& [key, value] : records) {
    std::string rest = " " + key + "=" + value + "\n";
    size_t len = rest.size() + 1;
    while (std::to_string(len).size() + rest.size() != len) ++len;
    body += std::to_string(len) + rest;
  }
  return UstarHeader("PaxHeaders/x", 'x', body.size()) + PaddedData(body);
}

// A PAX 0.1 sparse file "s" of 2000 bytes storing "0123456789" under `map`, then a file "t".
std::string SparseThenSecret(const std::string& map) {
  return PaxHeader({{"GNU.sparse.major", "0"},
                    {"GNU.sparse.minor", "1"},
                    {"GNU.sparse.name", "s"},
                    {"GNU.sparse.realsize", "2000"},
                    {"GNU.sparse.map", map}}) +
         UstarHeader("GNUSparseFile.0/s", '0', 10) + PaddedData("0123456789") +
         UstarHeader("t", '0', 6) + PaddedData("SECRET") + kEndOfArchive;
}

TEST_CASE("tar: a sparse map libarchive cannot use is an error, not a file read from later entries",
          "[tar]") {
  // libarchive drops a map whose offset it cannot represent and reports a plain file of the real
  // size, whose bytes would then be the headers and data of the entries after it.
  for (const std::string map : {"9223372036854775000,10", "0,1500", "50,1000"}) {
    INFO(map);
    auto r = ReadEntries(SparseThenSecret(map));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == EIO);
    CHECK_THAT(r.status().message(), Catch::Contains("entry 0 \"s\""));
    CHECK_THAT(r.status().message(), Catch::Contains("the tar stores 512"));
  }
  // A map within the stored data reads as usual.
  auto ok = ReadEntries(SparseThenSecret("0,5,100,5"));
  INFO(ok.status().message());
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 2);
  CHECK((*ok)[0].size == 2000);
  CHECK((*ok)[0].sparse.size() == 2);
}

}  // namespace
}  // namespace layerfs
