#include "cli/mount_options.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

MountingUser User(uid_t uid = 1000) {
  MountingUser who;
  who.uid = who.euid = uid;
  who.gid = uid;
  who.host_root = uid == 0;
  who.cwd = "/nonexistent-cwd";
  return who;
}

MountArgs Args(std::vector<std::string> options, bool read_only = false) {
  MountArgs args;
  args.mountpoint = "/mnt";
  args.options = std::move(options);
  args.read_only = read_only;
  return args;
}

// The one error PlanMount gives for `options`.
std::string ErrorOf(std::vector<std::string> options, const MountingUser& who = User()) {
  auto plan = PlanMount(Args(std::move(options)), who);
  REQUIRE_FALSE(plan.ok());
  return plan.status().message();
}

TEST_CASE("mount options: -o lists are split at commas, empty items dropped", "[cli]") {
  CHECK(SplitCommas({"ro,,allow_other", "", "timeout=5,"}) ==
        std::vector<std::string>{"ro", "allow_other", "timeout=5"});
}

TEST_CASE("mount options: the defaults", "[cli]") {
  auto plan = PlanMount(Args({}), User(1000));
  REQUIRE(plan.ok());
  CHECK_FALSE(plan->fs.read_only);
  CHECK(plan->fs.entry_timeout == 86400.0);
  CHECK(plan->fs.uid_map.identity());
  CHECK(plan->mount.readahead_kb == 1024);
  CHECK(plan->mount.fuse_options.empty());
  CHECK(plan->mount.mountpoint == "/mnt");
  // Owners natively only for root of the initial user namespace.
  CHECK_FALSE(plan->native_owners);
  CHECK(PlanMount(Args({}), User(0))->native_owners);
}

TEST_CASE("mount options: layerfs's own options are taken, the rest go to FUSE", "[cli]") {
  auto plan =
      PlanMount(Args({"ro,timeout=2.5,readahead=0", "allow_other,max_read=131072"}), User(0));
  REQUIRE(plan.ok());
  CHECK(plan->fs.read_only);
  CHECK(plan->fs.entry_timeout == 2.5);
  CHECK(plan->fs.attr_timeout == 2.5);
  CHECK(plan->mount.readahead_kb == 0);
  CHECK(plan->fs.max_read == 131072);
  // max_read is both: libfuse must see it too.
  CHECK(plan->mount.fuse_options == std::vector<std::string>{"allow_other", "max_read=131072"});
  // The last of ro and rw wins, as mount(8) does.
  CHECK_FALSE(PlanMount(Args({"ro,rw"}), User())->fs.read_only);
  CHECK_FALSE(PlanMount(Args({"rw"}, /*read_only=*/true), User())->fs.read_only);
}

TEST_CASE("mount options: owners and id mappings", "[cli]") {
  auto self = Args({});
  self.owner = "self";
  auto plan = PlanMount(self, User(1234));
  REQUIRE(plan.ok());
  CHECK(plan->fs.uid_map.squashes());
  CHECK(plan->fs.uid_map.ToHost(0) == 1234);

  plan = PlanMount(Args({"uidmapping=0:100000:65536,gidmapping=0:200000:10"}), User());
  REQUIRE(plan.ok());
  CHECK(plan->fs.uid_map.ToHost(5) == 100005);
  CHECK(plan->fs.gid_map.ToHost(5) == 200005);

  CHECK(PlanMount(Args({"owners=xattr"}), User(0))->native_owners == false);
  CHECK(ErrorOf({"owners=native"}) == "-o owners=native: only root can give files their owners");
  self.options = {"uidmapping=0:1:1"};
  CHECK(PlanMount(self, User()).status().message() ==
        "--owner=self and -o uidmapping/gidmapping exclude each other");
  auto other = Args({});
  other.owner = "nobody";
  CHECK(PlanMount(other, User()).status().message() == "--owner=nobody: expected image or self");
}

TEST_CASE("mount options: a bad value is one error naming the option", "[cli]") {
  CHECK(ErrorOf({"timeout=soon"}) == "-o timeout=soon: expected a number of seconds");
  CHECK(ErrorOf({"timeout=-1"}) == "-o timeout=-1: expected a number of seconds");
  CHECK(ErrorOf({"timeout="}) == "-o timeout=: expected a number of seconds");
  CHECK(ErrorOf({"readahead=lots"}) ==
        "-o readahead=lots: expected KiB (0 keeps the kernel's default)");
  CHECK(ErrorOf({"readahead=-1"}) ==
        "-o readahead=-1: expected KiB (0 keeps the kernel's default)");
  CHECK(ErrorOf({"readahead=2000000"}) ==
        "-o readahead=2000000: expected KiB (0 keeps the kernel's default)");
  CHECK(ErrorOf({"max_read=0"}) == "-o max_read=0: expected a number of bytes");
  CHECK(ErrorOf({"max_read=4k"}) == "-o max_read=4k: expected a number of bytes");
  CHECK(ErrorOf({"stats="}) == "-o stats=: expected a file to write");
  CHECK_THAT(ErrorOf({"uidmapping=0:1"}), Catch::StartsWith("-o uidmapping"));
  auto scratch = Args({"ro"});
  scratch.scratch = "/tmp/s";
  CHECK(PlanMount(scratch, User()).status().message() ==
        "--scratch: a read-only mount has no scratch directory");
}

TEST_CASE("mount options: a stats file is made absolute and its directory checked", "[cli]") {
  testing::TempDir dir;
  MountingUser who = User();
  who.cwd = dir.path();
  auto plan = PlanMount(Args({"stats=requests.json"}), who);
  REQUIRE(plan.ok());
  CHECK(plan->mount.stats_path == dir.path() + "/requests.json");
  plan = PlanMount(Args({"stats=" + dir.Sub("x.json")}), who);
  REQUIRE(plan.ok());
  CHECK(plan->mount.stats_path == dir.Sub("x.json"));
  auto missing = PlanMount(Args({"stats=" + dir.Sub("no/such/x.json")}), who);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ENOENT);
  CHECK_THAT(missing.status().message(), Catch::Contains("cannot write in " + dir.Sub("no/such/")));
}

}  // namespace
}  // namespace layerfs
