// layerfs mount: serve an image over FUSE.
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "cli/commands.h"
#include "cli/mount_options.h"
#include "fuse/preflight.h"
#include "fuse/request_stats.h"
#include "fuse/session.h"
#include "registry/image_name.h"
#include "registry/index_artifact.h"
#include "scratch/scratch_dir.h"
#include "tree/image_tree.h"
#include "tree/writable_tree.h"

namespace layerfs {
namespace {

// Mounting hides what the mount point holds, as mount(8) would; say so, as it does not.
void WarnIfNotEmpty(const std::string& mountpoint) {
  UniqueFd dir(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::vector<std::string> names;
  if (!dir || ListNames(dir.get(), &names) != 0 || names.empty()) return;
  LogWarning("mountpoint {} is not empty: what it holds ('{}'{}) is hidden while the image is "
             "mounted on it", mountpoint, *std::min_element(names.begin(), names.end()),
             names.size() > 1 ? fmt::format(" and {} more", names.size() - 1) : "");
}

}  // namespace

int RunMount(const MountArgs& args) {
  auto start = Clock::now();
  MountingUser who;
  who.uid = ::getuid();
  who.gid = ::getgid();
  who.euid = ::geteuid();
  who.host_root = IsHostRoot();
  if (char* cwd = ::getcwd(nullptr, 0)) {
    who.cwd = cwd;
    std::free(cwd);
  }
  auto plan = PlanMount(args, who);
  if (!plan.ok()) return Fail(plan.status());
  FsOptions& fs_options = plan->fs;
  MountOptions& mount = plan->mount;
  const bool read_only = fs_options.read_only;
  const bool native_owners = plan->native_owners;
  // Fail early on a mount that cannot happen, before any indexing work. A connection handed over
  // as /dev/fd/N is mounted already.
  if (HandedConnection(args.mountpoint) < 0) {
    Status mp = CheckMountpoint(args.mountpoint);
    if (mp.ok()) mp = CheckCanMount(args.mountpoint, mount.fuse_options);
    if (!mp.ok()) return Fail(mp);
    WarnIfNotEmpty(args.mountpoint);
  }

  ImageArgs image_args = args.image;
  image_args.span = plan->span;
  image_args.span_given = plan->span != 0;
  image_args.span_cache = plan->span_cache;
  auto name = ParseImageName(args.image.image);
  if (!name.ok()) return Fail(name.status());
  if ((args.push_index || args.verify != "chunks") && !name->remote()) {
    return Fail(Status::Invalid(args.image.image + ": --push-index and --verify are for images in "
                                "a registry: name a docker:// image"));
  }
  if (args.verify == "full") image_args.registry.lazy = false;
  image_args.registry.find_indexes = args.push_index;
  auto image = OpenImage(image_args);
  if (!image.ok()) return Fail(image.status());
  const OpenedImage& opened = **image;
  // With no index published beside the image, its layers were fetched whole and indexed here:
  // publish those indexes for the mounts to come. The mount goes on if that fails.
  if (args.push_index && opened.spec.published_indexes == 0) {
    auto pushed = PushIndexes(*name, image_args.registry, opened, kDefaultChunkSize);
    if (!pushed.ok()) {
      LogWarning("--push-index: {}", pushed.status().message());
    } else if (LogEnabled(LogLevel::kWarning)) {
      fmt::print("{}\n", *pushed);
      std::fflush(stdout);
    }
  } else if (args.push_index) {
    LogInfo("{}: indexes are published beside the image already; --push-index pushes none",
            args.image.image);
  }
  if (opened.span_cache) {
    AddStatsSection("span_cache", [cache = opened.span_cache] {
      SpanCache::Stats st = cache->stats();
      return std::vector<std::pair<std::string, uint64_t>>{{"hits", st.hits},
                                                           {"misses", st.misses},
                                                           {"evictions", st.evictions},
                                                           {"prefetches", st.prefetches},
                                                           {"bytes", st.bytes}};
    });
  }
  LogInfo("{}: {} layers ({} indexed, {} verified), {} paths, ready in {:.1f} ms",
          args.image.image, opened.layers.size(), opened.stats.layers_indexed,
          opened.stats.layers_verified, opened.tree.visible_paths(), MsSince(start));

  // Indexing a large layer leaves freed heap behind; give it back before the daemon forks off with
  // a copy of this address space.
  ::malloc_trim(0);
  std::unique_ptr<MountTree> tree;
  if (read_only) {
    tree = std::make_unique<ImageTree>(opened.tree);
  } else {
    std::vector<std::string> layer_ids;
    for (const Layer& l : opened.layers) layer_ids.push_back(l.index.diff_id().str());
    auto scratch = args.scratch.empty() ? ScratchDir::CreateEphemeral(layer_ids)
                                        : ScratchDir::Open(args.scratch, layer_ids);
    if (!scratch.ok()) return Fail(scratch.status());
    auto writable = std::make_unique<WritableTree>(opened.tree, std::move(*scratch), native_owners);
    Status loaded = writable->Load();
    if (!loaded.ok()) return Fail(loaded);
    LogInfo("scratch directory {} (owners kept {})", writable->scratch().path(),
            native_owners ? "natively" : "in xattrs");
    tree = std::move(writable);
  }
  if (!fs_options.uid_map.identity() || !fs_options.gid_map.identity()) {
    LogInfo("owners shown: users {}, groups {}", fs_options.uid_map.Describe(),
            fs_options.gid_map.Describe());
  }
  Filesystem fs(*tree, fs_options);
  mount.fsname = opened.spec.location;
  if (args.prefetch == "all" && opened.spec.start_background) {
    mount.on_serving = opened.spec.start_background;
  }
  Status s = ServeMount(&fs, mount);
  if (!s.ok()) return Fail(s);
  return 0;
}

}  // namespace layerfs
