#include "index/index_builder.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "index/layer_data.h"
#include "tests/util/layer_checks.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::MustIndex;
using testing::EntryAt;
using testing::Content;

using testing::TarFormat;
using testing::TarSpec;
using testing::TarWriter;

// The names in directory `path`, in index order.
std::vector<std::string> Children(const Layer& layer, std::string_view path) {
  const IndexEntry& dir = EntryAt(layer, path);
  REQUIRE(dir.type == static_cast<uint8_t>(EntryType::kDirectory));
  std::vector<std::string> names;
  uint32_t first = layer.index.first_child(dir);
  for (uint32_t k = 0; k < layer.index.child_count(dir); ++k) {
    names.emplace_back(layer.index.name(layer.index.entry(first + k)));
  }
  return names;
}

// Paths of every entry but the root, sorted.
std::set<std::string> AllPaths(const Layer& layer) {
  std::set<std::string> paths;
  for (uint32_t i = 1; i < layer.index.entry_count(); ++i) paths.insert(layer.index.PathOf(i));
  return paths;
}

EntryType TypeOf(const IndexEntry& e) { return static_cast<EntryType>(e.type); }

// --- Paths -----------------------------------------------------------------------------------

TEST_CASE("index: ./, //, trailing / and leading / name the same entry", "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .Dir("./etc/")
                              .File("/etc//passwd", "root:x:0:0")
                              .File("./etc/./group", "root:x:0:")
                              .Dir("usr//lib///")
                              .File("usr/lib/./os-release", "ID=test")
                              .Finish());
  CHECK(AllPaths(layer) == std::set<std::string>{"etc", "etc/passwd", "etc/group", "usr", "usr/lib",
                                                 "usr/lib/os-release"});
  CHECK(Content(layer, "etc/passwd") == "root:x:0:0");
  CHECK(Content(layer, "usr/lib/os-release") == "ID=test");
  CHECK(layer.index.name(EntryAt(layer, "etc/passwd")) == "passwd");
  CHECK((EntryAt(layer, "etc").flags & kFlagImplied) == 0);
}

TEST_CASE("index: two spellings of one path are one entry, the later one", "[index]") {
  Layer layer = MustIndex(
      TarWriter().File("./a/b", "first").File("/a//b", "second").File("a/./b", "third").Finish());
  CHECK(Children(layer, "a") == std::vector<std::string>{"b"});
  CHECK(Content(layer, "a/b") == "third");
  CHECK(layer.index.header().dropped_entries == 2);
}

TEST_CASE("index: dot-dot inside the image resolves to the entry it names", "[index]") {
  Layer layer = MustIndex(TarWriter().File("usr/share/../lib/x", "x").Finish());
  CHECK(Content(layer, "usr/lib/x") == "x");
  // The path is normalised before parents are implied: usr/share is not created.
  CHECK(layer.index.FindPath("usr/share") == kNoEntry);
}

TEST_CASE("index: a tar entry for the root sets the root's metadata", "[index]") {
  TarSpec root;
  root.path = "./";
  root.type = TarSpec::Type::kDir;
  root.mode = 0700;
  root.uid = 5;
  root.gid = 6;
  root.mtime = 1500000000;
  Layer with_root = MustIndex(TarWriter().Add(root).File("f", "").Finish());
  const IndexEntry& r = with_root.index.entry(kRootEntry);
  CHECK(r.mode == 0700);
  CHECK(r.uid == 5);
  CHECK(r.gid == 6);
  CHECK(r.mtime_sec == 1500000000);
  CHECK((r.flags & kFlagImplied) == 0);

  Layer without_root = MustIndex(TarWriter().File("f", "").Finish());
  const IndexEntry& implied = without_root.index.entry(kRootEntry);
  CHECK(implied.mode == 0755);
  CHECK((implied.flags & kFlagImplied) != 0);
}

TEST_CASE("index: a root entry that is not a directory is skipped with a warning", "[index]") {
  Layer layer = MustIndex(TarWriter().File(".", "not a dir").File("f", "f").Finish());
  CHECK(TypeOf(layer.index.entry(kRootEntry)) == EntryType::kDirectory);
  CHECK(Content(layer, "f") == "f");
  REQUIRE(layer.warnings.size() == 1);
  CHECK_THAT(layer.warnings[0], Catch::Contains("root"));
}

// --- Implied parents -------------------------------------------------------------------------

TEST_CASE("index: missing parent directories are implied with mode 0755", "[index]") {
  Layer layer = MustIndex(TarWriter().File("a/b/c/file", "deep", 0600).Finish());
  for (const char* dir : {"a", "a/b", "a/b/c"}) {
    INFO(dir);
    const IndexEntry& e = EntryAt(layer, dir);
    CHECK(TypeOf(e) == EntryType::kDirectory);
    CHECK((e.flags & kFlagImplied) != 0);
    CHECK(e.mode == 0755);
    CHECK(e.uid == 0);
  }
  CHECK((EntryAt(layer, "a/b/c/file").flags & kFlagImplied) == 0);
  CHECK(Content(layer, "a/b/c/file") == "deep");
}

TEST_CASE("index: a directory entry after its implied creation takes over, keeping children",
          "[index]") {
  TarSpec dir;
  dir.path = "a/b";
  dir.type = TarSpec::Type::kDir;
  dir.mode = 0700;
  dir.uid = 42;
  Layer layer = MustIndex(TarWriter().File("a/b/file", "x").Add(dir).Finish());
  const IndexEntry& b = EntryAt(layer, "a/b");
  CHECK((b.flags & kFlagImplied) == 0);
  CHECK(b.mode == 0700);
  CHECK(b.uid == 42);
  CHECK(Children(layer, "a/b") == std::vector<std::string>{"file"});
  CHECK((EntryAt(layer, "a").flags & kFlagImplied) != 0);
}

// --- Later entries replace earlier ones ------------------------------------------------------

TEST_CASE("index: a later file replaces an earlier file of the same path", "[index]") {
  Layer layer = MustIndex(
      TarWriter().File("etc/motd", "old motd", 0600).File("etc/motd", "new motd", 0644).Finish());
  CHECK(Content(layer, "etc/motd") == "new motd");
  CHECK(EntryAt(layer, "etc/motd").mode == 0644);
  CHECK(Children(layer, "etc") == std::vector<std::string>{"motd"});
  CHECK(layer.index.header().dropped_entries == 1);
  CHECK(layer.index.header().tar_entries == 2);
}

TEST_CASE("index: a directory replaces an earlier file of the same path", "[index]") {
  Layer layer =
      MustIndex(TarWriter().File("opt", "was a file").Dir("opt", 0711).File("opt/x", "x").Finish());
  const IndexEntry& opt = EntryAt(layer, "opt");
  CHECK(TypeOf(opt) == EntryType::kDirectory);
  CHECK(opt.mode == 0711);
  CHECK(Children(layer, "opt") == std::vector<std::string>{"x"});
}

TEST_CASE("index: a path below a file turns the file into an implied directory", "[index]") {
  Layer layer = MustIndex(TarWriter().File("opt", "was a file").File("opt/x", "x").Finish());
  const IndexEntry& opt = EntryAt(layer, "opt");
  CHECK(TypeOf(opt) == EntryType::kDirectory);
  CHECK((opt.flags & kFlagImplied) != 0);
  CHECK(Content(layer, "opt/x") == "x");
}

TEST_CASE("index: a file replacing a directory drops the directory's subtree", "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .Dir("d")
                              .File("d/x", "x")
                              .File("d/sub/y", "y")
                              .File("keep", "k")
                              .File("d", "now a file")
                              .Finish());
  const IndexEntry& d = EntryAt(layer, "d");
  CHECK(TypeOf(d) == EntryType::kRegular);
  CHECK(Content(layer, "d") == "now a file");
  CHECK(layer.index.FindPath("d/x") == kNoEntry);
  CHECK(layer.index.FindPath("d/sub/y") == kNoEntry);
  CHECK(AllPaths(layer) == std::set<std::string>{"d", "keep"});
  CHECK(layer.index.entry_count() == 3);
}

TEST_CASE("index: a directory re-created after a file replaced it starts empty", "[index]") {
  Layer layer = MustIndex(
      TarWriter().File("d/old", "o").File("d", "file").Dir("d").File("d/new", "n").Finish());
  CHECK(Children(layer, "d") == std::vector<std::string>{"new"});
}

TEST_CASE("index: a directory that replaces a non-directory of the same layer is opaque",
          "[index]") {
  // Applied in order (as docker and umoci extract a layer), the non-directory entry removes the
  // lower layers' directory of that name and the later directory is created empty, so none of the
  // lower directory's contents may show through: the new directory is opaque, as after
  // `.wh.NAME` followed by NAME/ in one layer.
  SECTION("an explicit directory entry") {
    Layer layer = MustIndex(TarWriter().File("opt", "file").Dir("opt").File("opt/x", "x").Finish());
    CHECK((EntryAt(layer, "opt").flags & kFlagOpaque) != 0);
  }
  SECTION("a directory replacing a symlink") {
    Layer layer = MustIndex(TarWriter().Symlink("opt", "elsewhere").Dir("opt").Finish());
    CHECK((EntryAt(layer, "opt").flags & kFlagOpaque) != 0);
  }
  SECTION("a directory re-created after a file replaced it") {
    Layer layer = MustIndex(TarWriter().Dir("d").File("d", "file").Dir("d").Finish());
    CHECK((EntryAt(layer, "d").flags & kFlagOpaque) != 0);
  }
}

TEST_CASE("index: a directory entry that repeats a directory of the same layer is not opaque",
          "[index]") {
  Layer layer = MustIndex(TarWriter().Dir("d").File("d/a", "a").Dir("d").Finish());
  CHECK((EntryAt(layer, "d").flags & kFlagOpaque) == 0);
}

TEST_CASE("index: a repeated directory keeps its children and takes the later metadata",
          "[index]") {
  TarSpec first;
  first.path = "srv";
  first.type = TarSpec::Type::kDir;
  first.mode = 0700;
  first.uid = 1;
  first.mtime = 1000;
  first.xattrs = {{"user.first", "1"}};
  TarSpec second = first;
  second.mode = 0755;
  second.uid = 2;
  second.mtime = 2000;
  second.xattrs = {{"user.second", "2"}};
  Layer layer =
      MustIndex(TarWriter().Add(first).File("srv/a", "a").Add(second).File("srv/b", "b").Finish());
  const IndexEntry& srv = EntryAt(layer, "srv");
  CHECK(srv.mode == 0755);
  CHECK(srv.uid == 2);
  CHECK(srv.mtime_sec == 2000);
  std::set<std::string> xattrs;
  for (uint16_t k = 0; k < layer.index.xattr_count(srv); ++k) {
    xattrs.emplace(layer.index.xattr_name(srv, k));
  }
  CHECK(xattrs == std::set<std::string>{"user.second"});
  CHECK(Children(layer, "srv") == std::vector<std::string>{"a", "b"});
  CHECK(Content(layer, "srv/a") == "a");
}

TEST_CASE("index: a symlink replaced by a file and a file by a symlink", "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .Symlink("a", "target")
                              .File("a", "file now")
                              .File("b", "file first")
                              .Symlink("b", "link now")
                              .Finish());
  CHECK(Content(layer, "a") == "file now");
  const IndexEntry& b = EntryAt(layer, "b");
  REQUIRE(TypeOf(b) == EntryType::kSymlink);
  CHECK(layer.index.link_target(b) == "link now");
}

// --- Whiteouts and opaque directories --------------------------------------------------------

TEST_CASE("index: .wh.NAME becomes a whiteout entry named NAME", "[index]") {
  Layer layer =
      MustIndex(TarWriter().Whiteout("etc/passwd").Whiteout("top").Whiteout("a/b/gone").Finish());
  const IndexEntry& passwd = EntryAt(layer, "etc/passwd");
  CHECK(TypeOf(passwd) == EntryType::kWhiteout);
  CHECK(layer.index.name(passwd) == "passwd");
  CHECK(TypeOf(EntryAt(layer, "top")) == EntryType::kWhiteout);
  CHECK(TypeOf(EntryAt(layer, "a/b/gone")) == EntryType::kWhiteout);
  CHECK((EntryAt(layer, "a/b").flags & kFlagImplied) != 0);
  CHECK(layer.index.FindPath("etc/.wh.passwd") == kNoEntry);
  CHECK(AllPaths(layer) ==
        std::set<std::string>{"etc", "etc/passwd", "top", "a", "a/b", "a/b/gone"});
}

TEST_CASE("index: the opaque marker flags its directory, wherever it is in the tar", "[index]") {
  SECTION("before the directory's header and children") {
    Layer layer = MustIndex(
        TarWriter().Opaque("var/cache").Dir("var/cache", 0700).File("var/cache/a", "a").Finish());
    const IndexEntry& cache = EntryAt(layer, "var/cache");
    CHECK((cache.flags & kFlagOpaque) != 0);
    CHECK((cache.flags & kFlagImplied) == 0);
    CHECK(cache.mode == 0700);
    CHECK(Children(layer, "var/cache") == std::vector<std::string>{"a"});
  }
  SECTION("after the directory's children") {
    Layer layer = MustIndex(TarWriter()
                                .Dir("var/cache")
                                .File("var/cache/a", "a")
                                .File("var/cache/b", "b")
                                .Opaque("var/cache")
                                .Finish());
    CHECK((EntryAt(layer, "var/cache").flags & kFlagOpaque) != 0);
    CHECK(Children(layer, "var/cache") == std::vector<std::string>{"a", "b"});
  }
  SECTION("in a directory the tar has no header for") {
    Layer layer = MustIndex(TarWriter().Opaque("implied/dir").Finish());
    const IndexEntry& dir = EntryAt(layer, "implied/dir");
    CHECK((dir.flags & kFlagOpaque) != 0);
    CHECK((dir.flags & kFlagImplied) != 0);
    CHECK(Children(layer, "implied/dir").empty());
  }
  SECTION("in the root") {
    Layer layer = MustIndex(TarWriter().File("a", "a").Opaque("").Finish());
    CHECK((layer.index.entry(kRootEntry).flags & kFlagOpaque) != 0);
  }
  SECTION("its parent is not flagged") {
    Layer layer = MustIndex(TarWriter().Opaque("var/cache").Finish());
    CHECK((EntryAt(layer, "var").flags & kFlagOpaque) == 0);
    CHECK((layer.index.entry(kRootEntry).flags & kFlagOpaque) == 0);
  }
}

TEST_CASE("index: the opaque marker itself is never an entry", "[index]") {
  Layer layer = MustIndex(TarWriter().Opaque("d").File("d/f", "f").Finish());
  CHECK(AllPaths(layer) == std::set<std::string>{"d", "d/f"});
}

TEST_CASE("index: .wh.NAME and the file NAME in one layer: the file shows", "[index]") {
  SECTION("whiteout first") {
    Layer layer = MustIndex(TarWriter().Whiteout("etc/conf").File("etc/conf", "new").Finish());
    CHECK(TypeOf(EntryAt(layer, "etc/conf")) == EntryType::kRegular);
    CHECK(Content(layer, "etc/conf") == "new");
  }
  SECTION("file first") {
    Layer layer = MustIndex(TarWriter().File("etc/conf", "new").Whiteout("etc/conf").Finish());
    CHECK(TypeOf(EntryAt(layer, "etc/conf")) == EntryType::kRegular);
    CHECK(Content(layer, "etc/conf") == "new");
  }
}

TEST_CASE("index: .wh.NAME and the directory NAME in one layer: an opaque directory", "[index]") {
  SECTION("whiteout, then the directory") {
    Layer layer =
        MustIndex(TarWriter().Whiteout("data").Dir("data", 0750).File("data/f", "f").Finish());
    const IndexEntry& data = EntryAt(layer, "data");
    CHECK(TypeOf(data) == EntryType::kDirectory);
    CHECK((data.flags & kFlagOpaque) != 0);
    CHECK(data.mode == 0750);
    CHECK(Children(layer, "data") == std::vector<std::string>{"f"});
  }
  SECTION("the directory, then the whiteout") {
    Layer layer = MustIndex(TarWriter().Dir("data").File("data/f", "f").Whiteout("data").Finish());
    const IndexEntry& data = EntryAt(layer, "data");
    CHECK(TypeOf(data) == EntryType::kDirectory);
    CHECK((data.flags & kFlagOpaque) != 0);
    CHECK(Children(layer, "data") == std::vector<std::string>{"f"});
  }
  SECTION("whiteout, then a path inside NAME without a header for NAME") {
    Layer layer = MustIndex(TarWriter().Whiteout("data").File("data/f", "f").Finish());
    const IndexEntry& data = EntryAt(layer, "data");
    CHECK(TypeOf(data) == EntryType::kDirectory);
    CHECK((data.flags & kFlagOpaque) != 0);
    CHECK(Content(layer, "data/f") == "f");
  }
}

TEST_CASE("index: aufs .wh..wh. names and everything under them are never indexed", "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .Dir(".wh..wh.plnk")
                              .File(".wh..wh.plnk/1234.5678", "hard link keeper")
                              .File(".wh..wh.aufs", "")
                              .Dir("sub/.wh..wh.orph")
                              .File("sub/real", "r")
                              .Finish());
  CHECK(AllPaths(layer) == std::set<std::string>{"sub", "sub/real"});
  CHECK(layer.warnings.empty());
}

TEST_CASE("index: a whiteout name used as a directory is skipped with a warning", "[index]") {
  Layer layer = MustIndex(TarWriter().File(".wh.x/y", "y").File("z", "z").Finish());
  CHECK(AllPaths(layer) == std::set<std::string>{"z"});
  REQUIRE(layer.warnings.size() == 1);
  CHECK_THAT(layer.warnings[0], Catch::Contains(".wh.x/y"));
}

// --- Order and lookup ------------------------------------------------------------------------

TEST_CASE("index: children are sorted bytewise and entries numbered breadth-first", "[index]") {
  // Written in an order that is neither sorted nor breadth-first.
  Layer layer = MustIndex(TarWriter()
                              .File("zeta/deep/er/file", "1")
                              .File("alpha", "2")
                              .File("caf\xc3\xa9", "3")
                              .File("Zulu", "4")
                              .File("zeta/b", "5")
                              .File("zeta/a", "6")
                              .Dir("mid")
                              .File("_under", "7")
                              .File("zeta/deep/x", "8")
                              .Finish());
  CHECK(Children(layer, "") ==
        std::vector<std::string>{"Zulu", "_under", "alpha", "caf\xc3\xa9", "mid", "zeta"});
  CHECK(Children(layer, "zeta") == std::vector<std::string>{"a", "b", "deep"});
  CHECK(Children(layer, "zeta/deep") == std::vector<std::string>{"er", "x"});
  const LayerIndex& ix = layer.index;
  auto depth = [&](uint32_t i) {
    int d = 0;
    for (; i != kRootEntry; i = ix.entry(i).parent) ++d;
    return d;
  };
  for (uint32_t i = 1; i < ix.entry_count(); ++i) {
    INFO(ix.PathOf(i));
    CHECK(ix.entry(i).parent < i);
    CHECK(depth(i - 1) <= depth(i));
    if (i > 1 && ix.entry(i - 1).parent == ix.entry(i).parent) {
      CHECK(ix.name(ix.entry(i - 1)) < ix.name(ix.entry(i)));
    }
  }
  // The root's children come first, right after the root.
  CHECK(ix.first_child(ix.entry(kRootEntry)) == 1);
  CHECK(ix.PathOf(1) == "Zulu");
}

TEST_CASE("index: FindChild and FindPath find every entry and nothing else", "[index]") {
  TarWriter writer;
  for (int d = 0; d < 40; ++d) {
    for (int f = 0; f < 50; ++f) {
      writer.File("dir" + std::to_string(d) + "/file" + std::to_string(f), "");
    }
  }
  writer.File("dir0/file0/not-below-a-file", "");  // turns dir0/file0 into a directory
  Layer layer = MustIndex(writer.Finish());
  const LayerIndex& ix = layer.index;
  REQUIRE(ix.entry_count() == 1 + 40 + 40 * 50 + 1);
  for (uint32_t i = 1; i < ix.entry_count(); ++i) {
    const IndexEntry& e = ix.entry(i);
    REQUIRE(ix.FindChild(e.parent, ix.name(e)) == i);
    REQUIRE(ix.FindPath(ix.PathOf(i)) == i);
  }
  CHECK(ix.FindPath("") == kRootEntry);
  CHECK(ix.FindPath("dir40") == kNoEntry);
  CHECK(ix.FindPath("dir1/file50") == kNoEntry);
  CHECK(ix.FindPath("dir1/file1/below-a-file") == kNoEntry);
  CHECK(ix.FindChild(kRootEntry, "file1") == kNoEntry);
  CHECK(ix.FindChild(kRootEntry, "") == kNoEntry);
  CHECK(ix.FindChild(ix.FindPath("dir1"), "dir2") == kNoEntry);
}

// --- Hard links ------------------------------------------------------------------------------

TEST_CASE("index: a hard link names the earlier entry of the same layer", "[index]") {
  Layer layer = MustIndex(
      TarWriter().File("usr/bin/vi", "editor", 0755).Hardlink("usr/bin/ex", "usr/bin/vi").Finish());
  const IndexEntry& ex = EntryAt(layer, "usr/bin/ex");
  REQUIRE(TypeOf(ex) == EntryType::kHardlink);
  CHECK((ex.flags & kFlagLowerLink) == 0);
  CHECK(ex.data == layer.index.FindPath("usr/bin/vi"));
  const IndexEntry& target = layer.index.entry(static_cast<uint32_t>(ex.data));
  auto content = testing::ReadPath(layer, "usr/bin/vi");
  REQUIRE(content.ok());
  CHECK(*content == "editor");
  CHECK(target.mode == 0755);
}

TEST_CASE("index: a chain of hard links (b->a, c->b) all name the first file", "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .File("a", "content")
                              .Hardlink("b", "a")
                              .Hardlink("c", "b")
                              .Hardlink("d", "./c")
                              .Finish());
  const uint32_t a = layer.index.FindPath("a");
  for (const char* link : {"b", "c", "d"}) {
    INFO(link);
    const IndexEntry& e = EntryAt(layer, link);
    REQUIRE(TypeOf(e) == EntryType::kHardlink);
    CHECK(e.data == a);
  }
}

TEST_CASE("index: a hard link to a file replaced later in the tar keeps the old content",
          "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .File("bin/tool", "old content", 0700)
                              .Hardlink("bin/old-a", "bin/tool")
                              .Hardlink("bin/old-b", "bin/tool")
                              .File("bin/tool", "new content", 0755)
                              .Hardlink("bin/new", "bin/tool")
                              .Finish());
  CHECK(Content(layer, "bin/tool") == "new content");
  // The first link takes the old file's place; the second links to it.
  const IndexEntry& old_a = EntryAt(layer, "bin/old-a");
  REQUIRE(TypeOf(old_a) == EntryType::kRegular);
  CHECK(Content(layer, "bin/old-a") == "old content");
  CHECK(old_a.mode == 0700);
  const IndexEntry& old_b = EntryAt(layer, "bin/old-b");
  REQUIRE(TypeOf(old_b) == EntryType::kHardlink);
  CHECK(old_b.data == layer.index.FindPath("bin/old-a"));
  const IndexEntry& new_link = EntryAt(layer, "bin/new");
  REQUIRE(TypeOf(new_link) == EntryType::kHardlink);
  CHECK(new_link.data == layer.index.FindPath("bin/tool"));
}

TEST_CASE("index: a hard link into a directory replaced later keeps the content", "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .File("d/file", "kept")
                              .Hardlink("link", "d/file")
                              .File("d", "d is a file now")
                              .Finish());
  CHECK(layer.index.FindPath("d/file") == kNoEntry);
  CHECK(Content(layer, "link") == "kept");
}

TEST_CASE("index: a hard link to a path not in the layer is a lower link to the normalised path",
          "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .Hardlink("usr/bin/python3", "./usr//lib/../bin/python3.11")
                              .Hardlink("usr/bin/py", "usr/bin/python3")
                              .Finish());
  const IndexEntry& e = EntryAt(layer, "usr/bin/python3");
  REQUIRE(TypeOf(e) == EntryType::kHardlink);
  CHECK((e.flags & kFlagLowerLink) != 0);
  CHECK(layer.index.link_target(e) == "usr/bin/python3.11");
  CHECK(e.size == std::string("usr/bin/python3.11").size());
  // A link to a lower link names the same lower path.
  const IndexEntry& py = EntryAt(layer, "usr/bin/py");
  REQUIRE(TypeOf(py) == EntryType::kHardlink);
  CHECK((py.flags & kFlagLowerLink) != 0);
  CHECK(layer.index.link_target(py) == "usr/bin/python3.11");
}

TEST_CASE("index: hard links to a directory, the root, itself or a whiteout are skipped",
          "[index]") {
  Layer layer = MustIndex(TarWriter()
                              .Dir("dir")
                              .Hardlink("to-dir", "dir")
                              .Hardlink("to-root", "./")
                              .File("self", "s")
                              .Hardlink("self", "self")
                              .Whiteout("gone")
                              .Hardlink("to-gone", "gone")
                              .Finish());
  CHECK(layer.index.FindPath("to-dir") == kNoEntry);
  CHECK(layer.index.FindPath("to-root") == kNoEntry);
  CHECK(layer.index.FindPath("to-gone") == kNoEntry);
  CHECK(Content(layer, "self") == "s");
  REQUIRE(layer.warnings.size() == 4);
  CHECK_THAT(layer.warnings[0], Catch::Contains("\"to-dir\""));
  CHECK_THAT(layer.warnings[1], Catch::Contains("\"to-root\""));
  CHECK_THAT(layer.warnings[2], Catch::Contains("\"self\""));
  CHECK_THAT(layer.warnings[3], Catch::Contains("\"to-gone\""));
}

// --- Bad input -------------------------------------------------------------------------------

TEST_CASE("index: a path climbing out of the root is an error naming the entry", "[index]") {
  for (const char* path : {"../etc/passwd", "a/../../escape", "/../x"}) {
    INFO(path);
    auto layer = testing::IndexTar(TarWriter().File("ok", "1").File(path, "x").Finish());
    REQUIRE_FALSE(layer.ok());
    CHECK(layer.status().code() == EINVAL);
    CHECK_THAT(layer.status().message(), Catch::Contains("entry 1"));
    CHECK_THAT(layer.status().message(), Catch::Contains(path));
  }
}

TEST_CASE("index: a hard link target outside the root is an error naming the entry", "[index]") {
  auto layer = testing::IndexTar(TarWriter().Hardlink("bin/evil", "../../etc/shadow").Finish());
  REQUIRE_FALSE(layer.ok());
  CHECK(layer.status().code() == EINVAL);
  CHECK_THAT(layer.status().message(), Catch::Contains("\"bin/evil\""));
  CHECK_THAT(layer.status().message(), Catch::Contains("../../etc/shadow"));
}

TEST_CASE("index: whiteouts naming nothing (.wh., .wh.., .wh...) are errors naming the entry",
          "[index]") {
  for (const char* name : {"dir/.wh.", "dir/.wh..", "dir/.wh..."}) {
    INFO(name);
    auto layer = testing::IndexTar(TarWriter().File(name, "").Finish());
    REQUIRE_FALSE(layer.ok());
    CHECK(layer.status().code() == EINVAL);
    CHECK_THAT(layer.status().message(), Catch::Contains(name));
    CHECK_THAT(layer.status().message(), Catch::Contains("whiteout"));
  }
}

TEST_CASE("index: names longer than 255 bytes are skipped with a warning", "[index]") {
  const std::string long_name(256, 'n');
  Layer layer = MustIndex(TarWriter(TarFormat::kPax)
                              .File("dir/" + long_name, "too long")
                              .File(long_name + "/child", "under a too-long name")
                              .File("dir/" + std::string(255, 'm'), "fits")
                              .Finish());
  CHECK(Content(layer, "dir/" + std::string(255, 'm')) == "fits");
  CHECK(AllPaths(layer).size() == 2);
  REQUIRE(layer.warnings.size() == 2);
  CHECK_THAT(layer.warnings[0], Catch::Contains("255"));
}

TEST_CASE("index: the header records the tar's facts", "[index]") {
  std::string tar =
      TarWriter().File("a", "12345").File("a", "123").File("b", "1234567").Whiteout("c").Finish();
  Layer layer = MustIndex(tar);
  const IndexHeader& h = layer.index.header();
  CHECK(h.tar_entries == 4);
  CHECK(h.dropped_entries == 1);
  CHECK(h.regular_bytes == 10);
  CHECK(h.tar_size == tar.size());
  CHECK(layer.index.diff_id() == testing::Sha256Of(tar));
}

}  // namespace
}  // namespace layerfs
