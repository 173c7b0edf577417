// Commit without a mount: changes made through a WritableTree, written as a layer by
// WriteScratchLayer and read back as a tar.
#include "commit/commit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "tar/tar_reader.h"
#include "tests/util/indexed_image.h"
#include "tests/util/tar_writer.h"
#include "tree/writable_tree.h"

namespace layerfs {
namespace {

using testing::TarWriter;
using Ino = MountTree::Ino;

struct Written {
  TarEntryType type;
  uint32_t mode;
  std::string content;
};

// The tar `fd` holds (uncompressed), by path.
std::map<std::string, Written> ReadBack(int fd) {
  struct stat st;
  REQUIRE(::fstat(fd, &st) == 0);
  std::map<std::string, Written> out;
  auto stats = ReadTar(fd, 0, static_cast<uint64_t>(st.st_size), "layer.tar", TarReadOptions{},
                       [&](const TarEntry& e) {
                         std::string content(e.size, '\0');
                         if (e.type == TarEntryType::kRegular && e.size > 0) {
                           REQUIRE(::pread(fd, content.data(), e.size,
                                           static_cast<off_t>(e.data_offset)) ==
                                   static_cast<ssize_t>(e.size));
                         }
                         out[std::string(e.path)] = {e.type, e.mode, content};
                         return Status::Ok();
                       });
  REQUIRE(stats.ok());
  return out;
}

TEST_CASE("commit: the changes of a writable tree become one layer", "[commit]") {
  const std::string big = testing::RandomBytes(100000, 7);
  testing::IndexedImage image({TarWriter()
                                   .Dir("etc")
                                   .File("etc/passwd", "root:x:0:0\n")
                                   .File("etc/shadow", "secret\n", 0600)
                                   .File("big", big)
                                   .Dir("old")
                                   .File("old/a", "1")
                                   .Finish()});
  std::vector<std::string> ids;
  for (const Layer& l : image.layers()) ids.push_back(l.index.diff_id().str());
  auto scratch = ScratchDir::CreateEphemeral(ids);
  REQUIRE(scratch.ok());
  WritableTree tree(image.tree(), std::move(*scratch), /*native_owners=*/false);
  REQUIRE(tree.Load().ok());

  struct stat st;
  REQUIRE(tree.Lookup(1, "etc", &st) == 0);
  const Ino etc = st.st_ino;
  // A new file, a removed one, a metadata change only, a content change, a replaced directory.
  REQUIRE(tree.Create(etc, "hostname", S_IFREG | 0644, {}, &st) == 0);
  size_t written = 0;
  REQUIRE(tree.Write(st.st_ino, "box\n", 4, 0, &written) == 0);
  REQUIRE(tree.Unlink(etc, "shadow") == 0);
  REQUIRE(tree.Lookup(1, "big", &st) == 0);
  struct stat mode = {};
  mode.st_mode = 0755;
  REQUIRE(tree.SetAttr(st.st_ino, mode, MountTree::kSetMode, &st) == 0);
  REQUIRE(tree.Lookup(etc, "passwd", &st) == 0);
  REQUIRE(tree.Write(st.st_ino, "ROOT", 4, 0, &written) == 0);
  REQUIRE(tree.Unlink(tree.Lookup(1, "old", &st) == 0 ? st.st_ino : 0, "a") == 0);
  REQUIRE(tree.Rmdir(1, "old") == 0);
  REQUIRE(tree.Mkdir(1, "old", 0700, {}, &st) == 0);

  testing::TempDir dir;
  UniqueFd out(::open(dir.Sub("layer.tar").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  REQUIRE(out);
  auto writer = LayerWriter::Create(out.get(), Compression::kNone);
  REQUIRE(writer.ok());
  auto stats = WriteScratchLayer(tree.scratch().upper_fd(), image.tree(), writer->get());
  REQUIRE(stats.ok());
  REQUIRE((*writer)->Finish().ok());

  auto layer = ReadBack(out.get());
  CHECK(layer.at("etc/hostname").content == "box\n");
  CHECK(layer.at("etc/.wh.shadow").type == TarEntryType::kRegular);
  CHECK(layer.at("etc/passwd").content == "ROOT:x:0:0\n");
  // A metadata copy carries the image's content into the layer.
  CHECK((layer.at("big").content == big));
  CHECK(layer.at("big").mode == 0755);
  CHECK(layer.at("old/.wh..wh..opq").type == TarEntryType::kRegular);
  REQUIRE(layer.count("old/") == 1);  // directories are named with a trailing slash
  CHECK(layer.at("old/").mode == 0700);
  CHECK(layer.count("old/a") == 0);
  // layerfs's own xattrs and files stay out.
  for (const auto& [path, w] : layer) {
    INFO(path);
    CHECK(path.find("layerfs") == std::string::npos);
  }
  CHECK(stats->whiteouts == 2);
  CHECK(stats->metacopies == 1);
}

}  // namespace
}  // namespace layerfs
