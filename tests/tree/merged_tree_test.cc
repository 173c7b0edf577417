// The union rules of MergedTree, one test each, checked through what a user of the mount sees:
// Lookup/LookupPath, Children, Stat, and the bytes ReadEntry returns for a node's entry.
#include "tree/merged_tree.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "index/layer_data.h"
#include "tests/util/indexed_image.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TarSpec;
using testing::TarWriter;

// The image of a test, with what a user of the mount sees of it.
class Image : public testing::IndexedImage {
 public:
  using IndexedImage::IndexedImage;

  bool Has(const std::string& path) const { return tree_.LookupPath(path) != MergedTree::kNoNode; }

  uint32_t Node(const std::string& path) const {
    uint32_t n = tree_.LookupPath(path);
    INFO("path: " << path);
    REQUIRE(n != MergedTree::kNoNode);
    return n;
  }

  // The whole content of the regular file at `path`, as a read through the mount returns it.
  std::string Read(const std::string& path) const {
    uint32_t n = Node(path);
    const IndexEntry& e = tree_.EntryOf(n);
    REQUIRE(static_cast<EntryType>(e.type) == EntryType::kRegular);
    std::string out(e.size, '\0');
    auto got = ReadEntry(tree_.layer(tree_.LayerOf(n)), e, 0, out.data(), out.size());
    REQUIRE(got.ok());
    out.resize(*got);
    return out;
  }

  struct stat Stat(const std::string& path) const {
    struct stat st;
    tree_.Stat(Node(path), &st);
    return st;
  }

  // Names listed by readdir of the directory at `path`, sorted.
  std::vector<std::string> Names(const std::string& path) const {
    std::vector<std::string> names;
    for (uint32_t c : tree_.Children(Node(path))) names.emplace_back(tree_.Name(c));
    std::sort(names.begin(), names.end());
    return names;
  }

  // Every visible path below the root with a one-letter type ('d', 'f', 'l', ...), reached only
  // through Children().
  std::map<std::string, char> Walk() const {
    std::map<std::string, char> out;
    WalkFrom(MergedTree::kRoot, "", &out);
    return out;
  }

 private:
  void WalkFrom(uint32_t dir, const std::string& prefix, std::map<std::string, char>* out) const {
    for (uint32_t c : tree_.Children(dir)) {
      std::string path = prefix + std::string(tree_.Name(c));
      struct stat st;
      tree_.Stat(c, &st);
      (*out)[path] = S_ISDIR(st.st_mode) ? 'd' : S_ISLNK(st.st_mode) ? 'l' : 'f';
      if (tree_.IsDir(c)) WalkFrom(c, path + "/", out);
    }
  }
};

using Names = std::vector<std::string>;

TarSpec DirSpec(std::string path, uint32_t mode, uint32_t uid, uint32_t gid, int64_t mtime) {
  TarSpec s;
  s.path = std::move(path);
  s.type = TarSpec::Type::kDir;
  s.mode = mode;
  s.uid = uid;
  s.gid = gid;
  s.mtime = mtime;
  return s;
}

TEST_CASE("a whiteout hides a lower file", "[tree]") {
  Image image(
      {TarWriter().File("a", "A").File("b", "B").Finish(), TarWriter().Whiteout("a").Finish()});
  CHECK_FALSE(image.Has("a"));
  CHECK(image.tree().Lookup(MergedTree::kRoot, "a") == MergedTree::kNoNode);
  CHECK(image.Read("b") == "B");
  CHECK(image.Names("") == Names{"b"});
}

TEST_CASE("a whiteout hides a lower directory and its whole subtree", "[tree]") {
  Image image({TarWriter()
                   .Dir("d")
                   .File("d/f", "F")
                   .Dir("d/sub")
                   .File("d/sub/deep", "D")
                   .File("keep", "K")
                   .Finish(),
               TarWriter().Dir("d2").File("d2/x", "X").Finish(),
               TarWriter().Whiteout("d").Finish()});
  CHECK_FALSE(image.Has("d"));
  CHECK_FALSE(image.Has("d/f"));
  CHECK_FALSE(image.Has("d/sub"));
  CHECK_FALSE(image.Has("d/sub/deep"));
  CHECK(image.Names("") == Names{"d2", "keep"});
  CHECK(image.Walk() == std::map<std::string, char>{{"d2", 'd'}, {"d2/x", 'f'}, {"keep", 'f'}});
  CHECK(image.Stat("").st_nlink == 3);
}

TEST_CASE("a whiteout does not hide its own layer's entry", "[tree]") {
  std::string lower = TarWriter().File("f", "lower").Dir("d").File("d/old", "O").Finish();
  SECTION("whiteout before the entry") {
    Image image({lower, TarWriter()
                            .Whiteout("f")
                            .File("f", "upper")
                            .Whiteout("d")
                            .Dir("d")
                            .File("d/new", "N")
                            .Finish()});
    CHECK(image.Read("f") == "upper");
    CHECK(image.Names("d") == Names{"new"});
  }
  SECTION("whiteout after the entry") {
    Image image({lower, TarWriter()
                            .File("f", "upper")
                            .Whiteout("f")
                            .Dir("d")
                            .File("d/new", "N")
                            .Whiteout("d")
                            .Finish()});
    CHECK(image.Read("f") == "upper");
    // The directory stays; what the lower layer had in it does not show through.
    CHECK(image.Names("d") == Names{"new"});
  }
  SECTION("whiteout and children, the directory only implied") {
    Image image({lower, TarWriter().Whiteout("d").File("d/new", "N").Finish()});
    CHECK(image.Names("d") == Names{"new"});
  }
}

TEST_CASE("a whiteout never shows in Children", "[tree]") {
  Image image({TarWriter().File("a", "A").Dir("d").File("d/x", "X").Finish(),
               TarWriter()
                   .Whiteout("a")
                   .Whiteout("nothing-below")
                   .Whiteout("d/x")
                   .Whiteout("d/also-nothing")
                   .File("b", "B")
                   .Finish()});
  CHECK(image.Names("") == Names{"b", "d"});
  CHECK(image.Names("d").empty());
  CHECK_FALSE(image.Has("nothing-below"));
  CHECK_FALSE(image.Has(".wh.a"));
  CHECK_FALSE(image.Has("d/.wh.x"));
  // Every node reachable through Children() counts as visible; tombstones do not.
  CHECK(image.tree().visible_count() == 1 + image.Walk().size());
  CHECK(image.tree().visible_paths() == image.Walk().size());
}

TEST_CASE("an opaque marker hides the lower directory's contents wherever it is in the tar",
          "[tree]") {
  std::string lower =
      TarWriter().Dir("d").File("d/lower", "L").Dir("d/sub").File("d/sub/x", "X").Finish();
  std::string upper;
  SECTION("first entry of the tar") {
    upper = TarWriter().Opaque("d").Dir("d").File("d/upper", "U").Finish();
  }
  SECTION("last entry of the tar") {
    upper = TarWriter().Dir("d").File("d/upper", "U").Opaque("d").Finish();
  }
  SECTION("between the directory's children") {
    upper = TarWriter().Dir("d").File("d/upper", "U").Opaque("d").File("d/upper2", "V").Finish();
  }
  SECTION("with no header for the directory") {
    upper = TarWriter().File("d/upper", "U").Opaque("d").Finish();
  }
  Image image({lower, upper});
  CHECK_FALSE(image.Has("d/lower"));
  CHECK_FALSE(image.Has("d/sub"));
  CHECK_FALSE(image.Has("d/sub/x"));
  CHECK(image.Read("d/upper") == "U");
  for (const std::string& name : image.Names("d")) CHECK(name.rfind("upper", 0) == 0);
  CHECK(image.Stat("d").st_nlink == 2);
}

TEST_CASE("an opaque directory shows its own layer's children and higher layers' additions",
          "[tree]") {
  Image image({TarWriter().Dir("d").File("d/a", "0").File("d/b", "0").Finish(),
               TarWriter().Dir("d").Opaque("d").File("d/b", "1").File("d/c", "1").Finish(),
               TarWriter().File("d/e", "2").Finish()});
  CHECK(image.Names("d") == Names{"b", "c", "e"});
  CHECK(image.Read("d/b") == "1");
  CHECK(image.Read("d/c") == "1");
  CHECK(image.Read("d/e") == "2");
}

TEST_CASE("an opaque root hides every lower layer", "[tree]") {
  Image image({TarWriter().File("a", "0").Dir("d").File("d/x", "0").Finish(),
               TarWriter().File("b", "1").Finish(), TarWriter().Opaque("").File("c", "2").Finish(),
               TarWriter().File("top", "3").Finish()});
  CHECK(image.Names("") == Names{"c", "top"});
  CHECK(image.Walk() == std::map<std::string, char>{{"c", 'f'}, {"top", 'f'}});
}

TEST_CASE("a later entry for the same path in one tar replaces the earlier one", "[tree]") {
  SECTION("file over file") {
    Image image({TarWriter().File("f", "first").File("f", "second").Finish()});
    CHECK(image.Read("f") == "second");
    CHECK(image.Names("") == Names{"f"});
  }
  SECTION("directory over file") {
    Image image({TarWriter().File("p", "file").Dir("p", 0700).File("p/x", "X").Finish()});
    CHECK(S_ISDIR(image.Stat("p").st_mode));
    CHECK((image.Stat("p").st_mode & 07777) == 0700);
    CHECK(image.Names("p") == Names{"x"});
  }
  SECTION("file over directory, subtree included") {
    Image image({TarWriter().Dir("p").File("p/x", "X").File("p", "file").Finish()});
    CHECK(image.Read("p") == "file");
    CHECK_FALSE(image.Has("p/x"));
  }
  SECTION("symlink over file") {
    Image image({TarWriter().File("s", "file").Symlink("s", "target").Finish()});
    CHECK(S_ISLNK(image.Stat("s").st_mode));
    CHECK(image.tree().LinkTarget(image.Node("s")) == "target");
  }
  SECTION("directory header repeated: the later metadata, both sets of children") {
    Image image({TarWriter()
                     .Add(DirSpec("d", 0700, 1, 1, 100))
                     .File("d/a", "A")
                     .Add(DirSpec("d", 0750, 2, 2, 200))
                     .File("d/b", "B")
                     .Finish()});
    struct stat st = image.Stat("d");
    CHECK((st.st_mode & 07777) == 0750);
    CHECK(st.st_uid == 2);
    CHECK(st.st_mtim.tv_sec == 200);
    CHECK(image.Names("d") == Names{"a", "b"});
  }
}

// Within one tar, a non-directory at a path means whatever lower layers had there is gone, even
// if a later entry of the same tar puts a directory back: that directory is opaque.
TEST_CASE("a directory that replaces a file of its own tar hides the lower directory's contents",
          "[tree]") {
  std::string lower = TarWriter().Dir("p").File("p/lower", "L").Finish();
  SECTION("explicit directory header") {
    Image image({lower, TarWriter().File("p", "file").Dir("p").File("p/x", "X").Finish()});
    CHECK(image.Names("p") == Names{"x"});
  }
  SECTION("directory implied by a deeper path") {
    Image image({lower, TarWriter().File("p", "file").File("p/x", "X").Finish()});
    CHECK(image.Names("p") == Names{"x"});
  }
}

TEST_CASE("a non-directory hides a lower directory and its whole subtree", "[tree]") {
  std::string lower =
      TarWriter().Dir("d").File("d/x", "X").Dir("d/sub").File("d/sub/y", "Y").Finish();
  SECTION("a file") {
    Image image({lower, TarWriter().File("d", "now a file").Finish()});
    CHECK(image.Read("d") == "now a file");
    CHECK_FALSE(image.Has("d/x"));
    CHECK_FALSE(image.Has("d/sub/y"));
    CHECK(image.tree().Lookup(image.Node("d"), "x") == MergedTree::kNoNode);
    CHECK(image.Stat("").st_nlink == 2);
  }
  SECTION("a symlink") {
    Image image({lower, TarWriter().Symlink("d", "elsewhere").Finish()});
    CHECK(S_ISLNK(image.Stat("d").st_mode));
    CHECK(image.tree().LinkTarget(image.Node("d")) == "elsewhere");
    CHECK_FALSE(image.Has("d/x"));
  }
  SECTION("in a middle layer, under a higher layer that adds nothing there") {
    Image image(
        {lower, TarWriter().File("d", "file").Finish(), TarWriter().File("other", "O").Finish()});
    CHECK(image.Read("d") == "file");
    CHECK(image.Walk() == std::map<std::string, char>{{"d", 'f'}, {"other", 'f'}});
  }
}

// Children() of a file must not read the directory table through a field that means something
// else for files (for hard-linked names, an index into the link table).
TEST_CASE("a non-directory has no children", "[tree]") {
  Image image({TarWriter().Dir("d").File("d/x", "X").Finish(), TarWriter()
                                                                   .File("d", "file")
                                                                   .File("f", "F")
                                                                   .File("a", "A")
                                                                   .Hardlink("b", "a")
                                                                   .File("c", "C")
                                                                   .Hardlink("e", "c")
                                                                   .Finish()});
  for (const char* path : {"d", "f", "a", "b", "c", "e"}) {
    INFO(path);
    CHECK(image.tree().Children(image.Node(path)).empty());
  }
}

TEST_CASE("a directory replaces a lower non-directory", "[tree]") {
  Image image({TarWriter().File("p", "file").Symlink("s", "t").Finish(),
               TarWriter().Dir("p", 0710).File("p/x", "X").File("s/y", "Y").Finish()});
  struct stat st = image.Stat("p");
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0710);
  CHECK(image.Names("p") == Names{"x"});
  CHECK(S_ISDIR(image.Stat("s").st_mode));
  CHECK(image.Read("s/y") == "Y");
}

TEST_CASE("directories merge and the highest layer's metadata wins", "[tree]") {
  Image image({TarWriter().Add(DirSpec("d", 0700, 1, 10, 1000)).File("d/a", "0").Finish(),
               TarWriter().Add(DirSpec("d", 0750, 2, 20, 2000)).File("d/b", "1").Finish(),
               TarWriter().Add(DirSpec("d", 0755, 3, 30, 3000)).File("d/c", "2").Finish()});
  CHECK(image.Names("d") == Names{"a", "b", "c"});
  struct stat st = image.Stat("d");
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(st.st_uid == 3);
  CHECK(st.st_gid == 30);
  CHECK(st.st_mtim.tv_sec == 3000);
  CHECK(image.Read("d/a") == "0");
  CHECK(image.Read("d/b") == "1");
}

TEST_CASE("a directory only implied by a higher layer keeps the lower explicit metadata",
          "[tree]") {
  Image image({TarWriter().Add(DirSpec("d", 0700, 1, 10, 1000)).File("d/a", "0").Finish(),
               TarWriter().Add(DirSpec("d", 0711, 2, 20, 2000)).File("d/b", "1").Finish(),
               TarWriter().File("d/c", "2").Finish()});
  struct stat st = image.Stat("d");
  CHECK((st.st_mode & 07777) == 0711);
  CHECK(st.st_uid == 2);
  CHECK(st.st_gid == 20);
  CHECK(st.st_mtim.tv_sec == 2000);
  CHECK(image.Names("d") == Names{"a", "b", "c"});

  SECTION("the root as well") {
    Image rooted({TarWriter().Add(DirSpec(".", 0700, 7, 8, 1234)).File("a", "0").Finish(),
                  TarWriter().File("b", "1").Finish()});
    struct stat root = rooted.Stat("");
    CHECK(S_ISDIR(root.st_mode));
    CHECK((root.st_mode & 07777) == 0700);
    CHECK(root.st_uid == 7);
    CHECK(root.st_mtim.tv_sec == 1234);
  }
}

TEST_CASE("a name re-created above its whiteout shows only the new content", "[tree]") {
  SECTION("a file") {
    Image image({TarWriter().File("f", "v0").Finish(), TarWriter().Whiteout("f").Finish(),
                 TarWriter().File("f", "v2").Finish()});
    CHECK(image.Read("f") == "v2");
  }
  SECTION("a file replaced by a directory") {
    Image image({TarWriter().File("f", "v0").Finish(), TarWriter().Whiteout("f").Finish(),
                 TarWriter().Dir("f").File("f/x", "X").Finish()});
    CHECK(image.Names("f") == Names{"x"});
  }
}

TEST_CASE("a directory deleted by a whiteout in a middle layer and re-created above is new",
          "[tree]") {
  std::string bottom = TarWriter()
                           .Add(DirSpec("d", 0700, 5, 5, 500))
                           .File("d/old", "old")
                           .Dir("d/sub")
                           .File("d/sub/x", "X")
                           .Finish();
  SECTION("re-created with a header") {
    Image image({bottom, TarWriter().Whiteout("d").Finish(),
                 TarWriter().Dir("d").File("d/new", "new").Finish()});
    CHECK(image.Names("d") == Names{"new"});
    CHECK_FALSE(image.Has("d/sub/x"));
    CHECK(image.Stat("d").st_nlink == 2);
  }
  SECTION("re-created implied: the deleted directory's metadata is gone too") {
    Image image(
        {bottom, TarWriter().Whiteout("d").Finish(), TarWriter().File("d/new", "new").Finish()});
    CHECK(image.Names("d") == Names{"new"});
    CHECK(image.Stat("d").st_uid == 0);
    CHECK((image.Stat("d").st_mode & 07777) == 0755);
  }
  SECTION("the whiteout of a parent") {
    Image image({bottom, TarWriter().Whiteout("d").Finish(),
                 TarWriter().File("d/sub/new", "new").Finish()});
    CHECK(image.Names("d") == Names{"sub"});
    CHECK(image.Names("d/sub") == Names{"new"});
  }
}

// A non-directory in a middle layer deletes a lower directory just as a whiteout does, so a
// directory re-created above it starts empty, with its own metadata.
TEST_CASE("a directory replaced by a non-directory in a middle layer and re-created above is new",
          "[tree]") {
  std::string bottom = TarWriter().Add(DirSpec("d", 0700, 5, 5, 500)).File("d/old", "old").Finish();
  SECTION("a file between") {
    Image image({bottom, TarWriter().File("d", "file").Finish(),
                 TarWriter().Dir("d").File("d/new", "new").Finish()});
    CHECK(image.Names("d") == Names{"new"});
  }
  SECTION("a symlink between, the directory above only implied") {
    Image image({bottom, TarWriter().Symlink("d", "elsewhere").Finish(),
                 TarWriter().File("d/new", "new").Finish()});
    CHECK(image.Names("d") == Names{"new"});
    CHECK(image.Stat("d").st_uid == 0);
  }
}

TEST_CASE("deleting in layer 2 what layer 1 created over layer 0", "[tree]") {
  Image image({TarWriter().File("f", "v0").Dir("d").File("d/a", "0").Finish(),
               TarWriter().File("f", "v1").File("d/b", "1").File("g", "1").Finish(),
               TarWriter().Whiteout("f").Whiteout("d/b").Whiteout("g").Finish()});
  CHECK_FALSE(image.Has("f"));
  CHECK_FALSE(image.Has("g"));
  CHECK(image.Names("d") == Names{"a"});
  CHECK(image.Names("") == Names{"d"});
}

TEST_CASE("hard links within one layer are one inode", "[tree]") {
  Image image({TarWriter()
                   .File("a", "shared")
                   .Hardlink("b", "a")
                   .Dir("d")
                   .Hardlink("d/c", "a")
                   .File("alone", "1")
                   .Finish()});
  const MergedTree& t = image.tree();
  struct stat a = image.Stat("a"), b = image.Stat("b"), c = image.Stat("d/c");
  CHECK(a.st_ino == b.st_ino);
  CHECK(a.st_ino == c.st_ino);
  CHECK(t.InodeOf(image.Node("a")) == t.InodeOf(image.Node("d/c")));
  CHECK(a.st_ino == t.InodeOf(image.Node("b")) + 1);
  CHECK(a.st_nlink == 3);
  CHECK(b.st_nlink == 3);
  CHECK(c.st_nlink == 3);
  CHECK(S_ISREG(b.st_mode));
  CHECK(b.st_size == 6);
  CHECK(image.Read("b") == "shared");
  CHECK(image.Read("d/c") == "shared");
  CHECK(image.Stat("alone").st_nlink == 1);
  CHECK(image.Stat("alone").st_ino != a.st_ino);
}

TEST_CASE("a hard link to a lower layer's file is one inode with it", "[tree]") {
  Image image({TarWriter().Dir("usr").File("usr/a", "lower data").Finish(),
               TarWriter().Hardlink("b", "usr/a").Hardlink("usr/c", "usr/a").Finish()});
  struct stat a = image.Stat("usr/a"), b = image.Stat("b"), c = image.Stat("usr/c");
  CHECK(a.st_ino == b.st_ino);
  CHECK(a.st_ino == c.st_ino);
  CHECK(a.st_nlink == 3);
  CHECK(b.st_nlink == 3);
  CHECK(image.Read("b") == "lower data");
  CHECK(image.Read("usr/c") == "lower data");
  CHECK(image.tree().LayerOf(image.Node("b")) == 0);
  CHECK(image.tree().warnings().empty());

  SECTION("through a chain of layers") {
    Image chain({TarWriter().File("a", "v").Finish(), TarWriter().Hardlink("b", "a").Finish(),
                 TarWriter().Hardlink("c", "b").Finish()});
    CHECK(chain.Stat("c").st_ino == chain.Stat("a").st_ino);
    CHECK(chain.Stat("c").st_nlink == 3);
    CHECK(chain.Read("c") == "v");
  }
}

TEST_CASE("a hard link keeps the old content when its target is replaced or deleted above",
          "[tree]") {
  std::string bottom = TarWriter().File("a", "old").Finish();
  std::string links = TarWriter().Hardlink("b", "a").Hardlink("c", "a").Finish();
  SECTION("replaced in a higher layer") {
    Image image({bottom, links, TarWriter().File("a", "new").Finish()});
    CHECK(image.Read("a") == "new");
    CHECK(image.Read("b") == "old");
    CHECK(image.Stat("a").st_nlink == 1);
    CHECK(image.Stat("b").st_nlink == 2);
    CHECK(image.Stat("b").st_ino == image.Stat("c").st_ino);
    CHECK(image.Stat("a").st_ino != image.Stat("b").st_ino);
  }
  SECTION("deleted in a higher layer") {
    Image image({bottom, links, TarWriter().Whiteout("a").Finish()});
    CHECK_FALSE(image.Has("a"));
    CHECK(image.Read("c") == "old");
    CHECK(image.Stat("b").st_nlink == 2);
  }
  SECTION("one link deleted in a higher layer") {
    Image image({bottom, links, TarWriter().Whiteout("b").Finish()});
    CHECK(image.Stat("a").st_nlink == 2);
    CHECK(image.Stat("c").st_ino == image.Stat("a").st_ino);
  }
  SECTION("replaced later in the link's own tar") {
    Image image({TarWriter()
                     .File("a", "old")
                     .Hardlink("b", "a")
                     .Hardlink("c", "a")
                     .File("a", "new")
                     .Finish()});
    CHECK(image.Read("a") == "new");
    CHECK(image.Read("b") == "old");
    CHECK(image.Read("c") == "old");
    CHECK(image.Stat("b").st_nlink == 2);
    CHECK(image.Stat("a").st_nlink == 1);
    CHECK(image.Stat("b").st_ino == image.Stat("c").st_ino);
  }
}

TEST_CASE("a hard link to a missing target is not shown and warns", "[tree]") {
  Image image({TarWriter().File("x", "X").Dir("dir").Finish(),
               TarWriter().Hardlink("b", "nothere").Hardlink("c", "dir").Finish()});
  CHECK_FALSE(image.Has("b"));
  CHECK_FALSE(image.Has("c"));
  CHECK(image.Names("") == Names{"dir", "x"});
  const auto& warnings = image.tree().warnings();
  REQUIRE(warnings.size() == 2);
  std::string all = warnings[0] + "\n" + warnings[1];
  CHECK_THAT(all, Catch::Contains("\"b\"") && Catch::Contains("nothere"));
  CHECK_THAT(all, Catch::Contains("\"c\""));

  SECTION("a target deleted by a layer between the target and the link") {
    Image deleted({TarWriter().File("a", "A").Finish(), TarWriter().Whiteout("a").Finish(),
                   TarWriter().Hardlink("b", "a").Finish()});
    CHECK_FALSE(deleted.Has("b"));
    CHECK(deleted.tree().warnings().size() == 1);
  }
}

TEST_CASE("parent directories missing from a tar are implied", "[tree]") {
  Image image({TarWriter().File("a/b/c/file", "F").Finish()});
  for (const char* dir : {"a", "a/b", "a/b/c"}) {
    INFO(dir);
    struct stat st = image.Stat(dir);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 07777) == 0755);
  }
  CHECK(image.Read("a/b/c/file") == "F");
  CHECK(image.Names("a") == Names{"b"});
}

TEST_CASE("a directory's st_nlink is 2 plus its subdirectories", "[tree]") {
  Image image({TarWriter().Dir("a").Dir("a/x").File("a/f", "").Dir("b").Finish(),
               TarWriter().Dir("a/y").Dir("a/x/deep").File("c", "").Symlink("a/l", "x").Finish(),
               TarWriter().Whiteout("b").File("a/z/implied", "").Finish()});
  CHECK(image.Stat("").st_nlink == 3);     // a (b deleted; c is a file)
  CHECK(image.Stat("a").st_nlink == 5);    // x, y, z
  CHECK(image.Stat("a/x").st_nlink == 3);  // deep
  CHECK(image.Stat("a/x/deep").st_nlink == 2);
  CHECK(image.Stat("a/z").st_nlink == 2);
}

TEST_CASE("the visible tree does not depend on how many layers carry it", "[tree]") {
  // The same 128 files, once in one layer and once one file per layer (each layer repeating the
  // directory headers), with a whiteout stack on top: one probe per lookup means the merged result,
  // not the layer count, is what Lookup sees.
  constexpr int kFiles = 128;
  auto path_of = [](int i) {
    return "d" + std::to_string(i % 8) + "/s" + std::to_string(i % 3) + "/f" + std::to_string(i);
  };
  TarWriter single;
  for (int i = 0; i < kFiles; ++i) single.File(path_of(i), "content " + std::to_string(i));
  std::vector<std::string> spread;
  for (int i = 0; i < kFiles; ++i) {
    TarWriter layer;
    layer.Dir("d" + std::to_string(i % 8));
    layer.File(path_of(i), "content " + std::to_string(i));
    spread.push_back(layer.Finish());
  }
  Image one({single.Finish()});
  Image many(spread);
  REQUIRE(many.layers().size() == kFiles);
  CHECK(one.Walk() == many.Walk());
  CHECK(one.tree().visible_count() == many.tree().visible_count());
  CHECK(one.tree().visible_count() == 1 + 8 + 8 * 3 + kFiles);
  for (int i = 0; i < kFiles; i += 7) {
    INFO(path_of(i));
    CHECK(many.Read(path_of(i)) == "content " + std::to_string(i));
    CHECK(many.tree().LayerOf(many.Node(path_of(i))) == static_cast<uint32_t>(i));
  }
}

TEST_CASE("node numbers are the same when the tree is built twice", "[tree]") {
  std::vector<std::string> tars = {
      TarWriter().Dir("etc").File("etc/a", "A").File("etc/b", "B").File("bin/x", "X").Finish(),
      TarWriter()
          .Whiteout("etc/a")
          .Hardlink("bin/y", "bin/x")
          .Opaque("opt")
          .File("opt/o", "")
          .Finish(),
      TarWriter().File("etc/c", "C").Symlink("lib", "usr/lib").Hardlink("etc/d", "etc/c").Finish()};
  Image first(tars);
  Image second(tars);
  auto paths = first.Walk();
  REQUIRE(paths == second.Walk());
  CHECK(first.tree().node_count() == second.tree().node_count());
  for (const auto& [path, type] : paths) {
    INFO(path);
    uint32_t a = first.Node(path), b = second.Node(path);
    CHECK(a == b);
    CHECK(first.tree().InodeOf(a) == second.tree().InodeOf(b));
    CHECK(first.Stat(path).st_ino == second.Stat(path).st_ino);
    CHECK(first.tree().PathOf(a) == "/" + path);
  }
  CHECK(first.Stat("bin/y").st_ino == first.Stat("bin/x").st_ino);
}

}  // namespace
}  // namespace layerfs
