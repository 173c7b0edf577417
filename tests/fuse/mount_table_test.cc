#include "fuse/mount_table.h"

#include <catch2/catch.hpp>
#include <sstream>
#include <string>

#include "fuse/session.h"

namespace layerfs {
namespace {

const char* kMountinfo =
    "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n"
    "30 22 0:40 / /mnt/my\\040disk rw,relatime shared:9 master:1 - tmpfs none rw\n"
    "31 30 0:41 / /mnt/my\\040disk rw,nosuid,nodev - fuse.layerfs /images/app\\040v1 ro\n"
    "40 1 0:50 / /srv rw - fuse.sshfs host:/ rw\n";

std::optional<MountEntry> Find(const std::string& path) {
  std::istringstream in(kMountinfo);
  return FindMountIn(in, path);
}

TEST_CASE("mount table: the mount on top, with escapes undone", "[fuse]") {
  auto m = Find("/mnt/my disk");
  REQUIRE(m);
  CHECK(m->device == "0:41");  // the layerfs mount over the tmpfs
  CHECK(m->is_layerfs());
  CHECK(m->source == "/images/app v1");
  CHECK(m->point == "/mnt/my disk");
  auto other = Find("/srv");
  REQUIRE(other);
  CHECK(other->fstype == "fuse.sshfs");
  CHECK_FALSE(other->is_layerfs());
  CHECK_FALSE(Find("/mnt"));
  CHECK_FALSE(Find("/mnt/my\\040disk"));  // paths are compared unescaped
}

TEST_CASE("session: /dev/fd/N names a handed connection, nothing else does", "[fuse]") {
  CHECK(HandedConnection("/dev/fd/3") == 3);
  CHECK(HandedConnection("/dev/fd/1234") == 1234);
  CHECK(HandedConnection("/dev/fd/") == -1);
  CHECK(HandedConnection("/dev/fd/3x") == -1);
  CHECK(HandedConnection("/dev/fd/-1") == -1);
  CHECK(HandedConnection("/mnt/fd/3") == -1);
  CHECK(HandedConnection("/dev/fd/99999999999") == -1);
}

}  // namespace
}  // namespace layerfs
