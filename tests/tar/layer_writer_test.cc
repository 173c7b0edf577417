#include "tar/layer_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "index/layer_data.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TempDir;

TarItem Item(std::string path, mode_t mode, int64_t sec = 1700000000, long nsec = 0) {
  TarItem item;
  item.path = std::move(path);
  item.mode = mode;
  item.mtime = {sec, nsec};
  return item;
}

// Writes the items (with the given contents for regular files) and returns the blob's bytes.
std::string WriteLayer(const std::vector<std::pair<TarItem, std::string>>& items,
                       Compression compression, WrittenLayer* written) {
  TempDir dir;
  const std::string path = dir.Sub("layer");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  REQUIRE(fd);
  auto writer = LayerWriter::Create(fd.get(), compression);
  REQUIRE(writer.ok());
  for (const auto& [item, content] : items) {
    REQUIRE((*writer)->Add(item).ok());
    if (!content.empty()) REQUIRE((*writer)->WriteData(content.data(), content.size()).ok());
  }
  auto done = (*writer)->Finish();
  REQUIRE(done.ok());
  *written = *done;
  return testing::ReadFile(path);
}

const IndexEntry& At(const Layer& layer, std::string_view path) {
  uint32_t id = layer.index.FindPath(path);
  INFO("path: " << path);
  REQUIRE(id != kNoEntry);
  return layer.index.entry(id);
}

TEST_CASE("LayerWriter: every entry type comes back through the indexer", "[layer_writer]") {
  TarItem file = Item("dir/file", S_IFREG | 04755);
  file.uid = 1000;
  file.gid = 100;
  file.size = 5;
  TarItem link = Item("dir/hard", S_IFREG | 0644);
  link.hardlink = true;
  link.link = "dir/file";
  TarItem sym = Item("dir/sym", S_IFLNK | 0777);
  sym.link = "../target";
  TarItem chr = Item("dev/null", S_IFCHR | 0666);
  chr.rdev = makedev(1, 3);
  TarItem blk = Item("dev/big", S_IFBLK | 0660);
  blk.rdev = makedev(259, 70000);
  WrittenLayer w;
  std::string tar = WriteLayer({{Item("dir", S_IFDIR | 01777), ""},
                                {file, "hello"},
                                {link, ""},
                                {sym, ""},
                                {Item("dev", S_IFDIR | 0755), ""},
                                {chr, ""},
                                {blk, ""},
                                {Item("dev/fifo", S_IFIFO | 0600), ""},
                                {Item("dir/.wh.gone", S_IFREG | 0644), ""},
                                {Item("dir/.wh..wh..opq", S_IFREG | 0644), ""}},
                               Compression::kNone, &w);
  CHECK(w.diff_id.hex() == testing::Sha256Of(tar).hex());
  CHECK(w.blob_digest.hex() == w.diff_id.hex());
  CHECK(w.blob_size == tar.size());
  CHECK(tar.size() % 512 == 0);
  auto layer = testing::IndexTar(tar);
  INFO(layer.status().message());
  REQUIRE(layer.ok());
  const IndexEntry& d = At(*layer, "dir");
  CHECK(static_cast<EntryType>(d.type) == EntryType::kDirectory);
  CHECK(d.mode == 01777);
  CHECK((d.flags & kFlagOpaque) != 0);
  const IndexEntry& f = At(*layer, "dir/file");
  CHECK(f.mode == 04755);
  CHECK(f.uid == 1000);
  CHECK(f.gid == 100);
  CHECK(f.mtime_sec == 1700000000);
  auto content = testing::ReadPath(*layer, "dir/file");
  REQUIRE(content.ok());
  CHECK(*content == "hello");
  CHECK(static_cast<EntryType>(At(*layer, "dir/hard").type) == EntryType::kHardlink);
  CHECK(layer->index.link_target(At(*layer, "dir/sym")) == "../target");
  CHECK(At(*layer, "dev/null").data == makedev(1, 3));
  CHECK(At(*layer, "dev/big").data == makedev(259, 70000));
  CHECK(static_cast<EntryType>(At(*layer, "dev/fifo").type) == EntryType::kFifo);
  CHECK(static_cast<EntryType>(At(*layer, "dir/gone").type) == EntryType::kWhiteout);
}

TEST_CASE("LayerWriter: what ustar cannot hold goes in pax records", "[layer_writer]") {
  const std::string long_dir = std::string(120, 'd');
  const std::string long_name = long_dir + "/" + std::string(200, 'n') + " \n\xc3\xa9";
  TarItem file = Item(long_name, S_IFREG | 0644, -86400);  // before 1970
  file.uid = 4000000000u;
  file.gid = 3000000000u;
  file.size = 3;
  file.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02\x00\x20\x00", 7)},
                 {"user.empty-ish", "v"}};
  TarItem sym = Item(long_dir + "/sym", S_IFLNK | 0777, 5, 123456789);
  sym.link = std::string(300, 't');
  WrittenLayer w;
  std::string tar = WriteLayer({{Item(long_dir, S_IFDIR | 0755), ""}, {file, "abc"}, {sym, ""}},
                               Compression::kNone, &w);
  auto layer = testing::IndexTar(tar);
  INFO(layer.status().message());
  REQUIRE(layer.ok());
  const IndexEntry& f = At(*layer, long_name);
  CHECK(f.uid == 4000000000u);
  CHECK(f.gid == 3000000000u);
  CHECK(f.mtime_sec == -86400);
  CHECK(f.mtime_nsec == 0);
  REQUIRE(f.xattr_count == 2);
  std::map<std::string, std::string> xattrs;
  for (uint16_t k = 0; k < f.xattr_count; ++k) {
    xattrs[std::string(layer->index.xattr_name(f, k))] = layer->index.xattr_value(f, k);
  }
  CHECK(xattrs["security.capability"] == std::string("\x01\x00\x00\x02\x00\x20\x00", 7));
  CHECK(xattrs["user.empty-ish"] == "v");
  auto content = testing::ReadPath(*layer, long_name);
  REQUIRE(content.ok());
  CHECK(*content == "abc");
  const IndexEntry& s = At(*layer, long_dir + "/sym");
  CHECK(layer->index.link_target(s) == std::string(300, 't'));
  CHECK(s.mtime_sec == 5);
  CHECK(s.mtime_nsec == 123456789);
}

TEST_CASE("LayerWriter: gzip and zstd blobs hold the same tar", "[layer_writer]") {
  TarItem file = Item("f", S_IFREG | 0644);
  const std::string data = testing::RandomBytes(300000, 3);
  file.size = data.size();
  WrittenLayer plain, gz, zst;
  std::string tar = WriteLayer({{file, data}}, Compression::kNone, &plain);
  std::string gz_blob = WriteLayer({{file, data}}, Compression::kGzip, &gz);
  std::string zst_blob = WriteLayer({{file, data}}, Compression::kZstd, &zst);
  CHECK(gz.diff_id.hex() == plain.diff_id.hex());
  CHECK(zst.diff_id.hex() == plain.diff_id.hex());
  CHECK(gz.blob_digest.hex() == testing::Sha256Of(gz_blob).hex());
  CHECK(zst.blob_digest.hex() == testing::Sha256Of(zst_blob).hex());
  CHECK(gz.blob_size == gz_blob.size());
  TempDir dir;
  testing::WriteFile(dir.Sub("l.gz"), gz_blob);
  testing::WriteFile(dir.Sub("l.zst"), zst_blob);
  REQUIRE(testing::RunShell("gzip -dc " + dir.Sub("l.gz") + " > " + dir.Sub("from-gz")) == 0);
  REQUIRE(testing::RunShell("zstd -q -dc " + dir.Sub("l.zst") + " > " + dir.Sub("from-zst")) ==
          0);
  CHECK(testing::ReadFile(dir.Sub("from-gz")) == tar);
  CHECK(testing::ReadFile(dir.Sub("from-zst")) == tar);
}

TEST_CASE("LayerWriter: content must match the sizes declared", "[layer_writer]") {
  TempDir dir;
  UniqueFd fd(::open(dir.Sub("l").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  auto writer = LayerWriter::Create(fd.get(), Compression::kNone);
  REQUIRE(writer.ok());
  TarItem file = Item("f", S_IFREG | 0644);
  file.size = 4;
  REQUIRE((*writer)->Add(file).ok());
  CHECK(!(*writer)->WriteData("12345", 5).ok());
  REQUIRE((*writer)->WriteData("12", 2).ok());
  CHECK(!(*writer)->Add(Item("g", S_IFREG | 0644)).ok());
  CHECK(!(*writer)->Finish().ok());
}

}  // namespace
}  // namespace layerfs
