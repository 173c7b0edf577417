// ImageTree without a mount: the read-only tree the FUSE operations serve, through the calls they
// make: numbers, listings and their offsets, lookup counts, and refusals of every change.
#include "tree/image_tree.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "tests/util/indexed_image.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::TarSpec;
using testing::TarWriter;
using Ino = MountTree::Ino;

std::vector<std::string> Names(const std::vector<MountTree::DirItem>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.name);
  return out;
}

TEST_CASE("image tree: lookups, attributes and links", "[tree]") {
  testing::IndexedImage image({TarWriter()
                                   .Dir("etc")
                                   .File("etc/passwd", "root:x:0:0\n")
                                   .Symlink("link", "etc/passwd")
                                   .Hardlink("hard", "etc/passwd")
                                   .Finish()});
  ImageTree tree(image.tree());
  struct stat st;
  REQUIRE(tree.Lookup(1, "etc", &st) == 0);
  const Ino etc = st.st_ino;
  CHECK(S_ISDIR(st.st_mode));
  REQUIRE(tree.Lookup(etc, "passwd", &st) == 0);
  const Ino passwd = st.st_ino;
  CHECK(st.st_size == 11);
  REQUIRE(tree.Lookup(1, "hard", &st) == 0);
  CHECK(st.st_ino == passwd);  // hard links are one inode
  CHECK(tree.Lookup(1, "missing", &st) == ENOENT);
  CHECK(tree.Lookup(passwd, "x", &st) == ENOTDIR);
  CHECK(tree.Lookup(1, std::string(256, 'n'), &st) == ENAMETOOLONG);
  CHECK(tree.Lookup(image.tree().node_count() + 1, "x", &st) == ESTALE);
  std::string target;
  REQUIRE(tree.Lookup(1, "link", &st) == 0);
  REQUIRE(tree.Readlink(st.st_ino, &target) == 0);
  CHECK(target == "etc/passwd");
  CHECK(tree.Readlink(passwd, &target) == EINVAL);
  MountTree::ReadSource src;
  REQUIRE(tree.ReadFrom(passwd, &src) == 0);
  CHECK_FALSE(src.fd);
  CHECK(src.node == passwd - 1);
}

TEST_CASE("image tree: every inode handed out is counted until forgotten", "[tree]") {
  testing::IndexedImage image({TarWriter().File("a", "1").Hardlink("b", "a").Finish()});
  ImageTree tree(image.tree());
  struct stat st;
  REQUIRE(tree.Lookup(1, "a", &st) == 0);
  const Ino a = st.st_ino;
  REQUIRE(tree.Lookup(1, "b", &st) == 0);
  REQUIRE(tree.GetAttr(a, &st, /*count=*/true) == 0);
  REQUIRE(tree.GetAttr(a, &st) == 0);  // not counted
  CHECK(tree.LookupCount(a) == 3);
  // READDIRPLUS counts through GetAttr; a listing alone does not.
  std::vector<MountTree::DirItem> items;
  REQUIRE(tree.ReadDir(1, 0, 100, &items) == 0);
  CHECK(tree.LookupCount(a) == 3);
  tree.Forget(a, 2);
  CHECK(tree.LookupCount(a) == 1);
  tree.Forget(a, 5);  // more than it has: logged, and left at 0
  CHECK(tree.LookupCount(a) == 0);
}

TEST_CASE("image tree: listings resume at the offsets they hand out", "[tree]") {
  TarWriter w;
  w.Dir("d");
  for (int i = 0; i < 20; ++i) w.File("d/f" + std::to_string(100 + i), "");
  testing::IndexedImage image({w.Finish()});
  ImageTree tree(image.tree());
  struct stat st;
  REQUIRE(tree.Lookup(1, "d", &st) == 0);
  const Ino d = st.st_ino;
  std::vector<MountTree::DirItem> all;
  REQUIRE(tree.ReadDir(d, 0, 1000, &all) == 0);
  REQUIRE(all.size() == 22);
  CHECK(all[0].name == ".");
  CHECK(all[1].name == "..");
  CHECK(all[1].ino == 1);  // its parent, the root
  CHECK(all[2].name == "f100");
  CHECK(all[2].next == MountTree::kListFirst + 1);
  // In batches of 3 from the offset each batch ends at: the same listing.
  std::vector<std::string> batched;
  uint64_t offset = 0;
  for (;;) {
    std::vector<MountTree::DirItem> items;
    REQUIRE(tree.ReadDir(d, offset, 3, &items) == 0);
    if (items.empty()) break;
    for (const auto& i : items) batched.push_back(i.name);
    offset = items.back().next;
  }
  CHECK(batched == Names(all));
  std::vector<MountTree::DirItem> none;
  CHECK(tree.ReadDir(d, 1000, 10, &none) == 0);
  CHECK(none.empty());
  REQUIRE(tree.Lookup(d, "f100", &st) == 0);
  CHECK(tree.ReadDir(st.st_ino, 0, 10, &none) == ENOTDIR);
}

TEST_CASE("image tree: xattrs come from the index; every change is EROFS", "[tree]") {
  TarSpec f;
  f.path = "f";
  f.content = "x";
  f.xattrs = {{"user.origin", "layer-0"}, {"security.capability", std::string("\x01\x00", 2)}};
  testing::IndexedImage image({TarWriter().Add(f).Finish()});
  ImageTree tree(image.tree());
  struct stat st;
  REQUIRE(tree.Lookup(1, "f", &st) == 0);
  const Ino ino = st.st_ino;
  std::string value;
  REQUIRE(tree.GetXattr(ino, "user.origin", &value) == 0);
  CHECK(value == "layer-0");
  CHECK(tree.GetXattr(ino, "user.none", &value) == ENODATA);
  std::string names;
  REQUIRE(tree.ListXattr(ino, &names) == 0);
  CHECK(names.find(std::string("user.origin\0", 12)) != std::string::npos);
  const MountTree::Caller caller;
  CHECK(tree.Create(1, "new", S_IFREG | 0644, caller, &st) == EROFS);
  CHECK(tree.Mkdir(1, "dir", 0755, caller, &st) == EROFS);
  CHECK(tree.Unlink(1, "f") == EROFS);
  CHECK(tree.Rename(1, "f", 1, "g", 0) == EROFS);
  size_t written;
  CHECK(tree.Write(ino, "x", 1, 0, &written) == EROFS);
  CHECK(tree.SetAttr(ino, st, MountTree::kSetMode, &st) == EROFS);
  CHECK(tree.SetXattr(ino, "user.x", "1", 0) == EROFS);
  struct statvfs sv;
  REQUIRE(tree.Statfs(&sv) == 0);
  CHECK(sv.f_files == image.tree().visible_count());
  CHECK(sv.f_namemax == 255);
}

}  // namespace
}  // namespace layerfs
