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
#include "fuse/preflight.h"
#include "fuse/session.h"
#include "scratch/scratch_dir.h"
#include "tree/writable_tree.h"

namespace layerfs {
namespace {

std::vector<std::string> SplitCommas(const std::vector<std::string>& options) {
  std::vector<std::string> out;
  for (const std::string& o : options) {
    size_t pos = 0;
    while (pos <= o.size()) {
      size_t comma = o.find(',', pos);
      if (comma == std::string::npos) comma = o.size();
      if (comma > pos) out.push_back(o.substr(pos, comma - pos));
      pos = comma + 1;
    }
  }
  return out;
}

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
  FsOptions fs_options;
  MountOptions mount;
  bool read_only = args.read_only;
  // Owners and device nodes in the scratch directory: natively when this process can give a file
  // any owner and make any device, which root of a user namespace cannot.
  bool native_owners = IsHostRoot();
  std::string uid_mapping, gid_mapping;
  mount.mountpoint = args.mountpoint;
  mount.foreground = args.foreground;
  mount.debug = args.debug;
  mount.single_thread = args.single_thread;
  mount.max_threads = args.threads;
  for (const std::string& o : SplitCommas(args.options)) {
    if (o == "ro") {
      read_only = true;
    } else if (o == "rw") {
      read_only = false;
    } else if (o == "owners=native" || o == "owners=xattr") {
      native_owners = o == "owners=native";
      if (native_owners && ::geteuid() != 0) {
        return Fail(Status::Invalid("-o owners=native: only root can give files their owners"));
      }
    } else if (o.rfind("uidmapping=", 0) == 0) {
      uid_mapping = o.substr(11);
    } else if (o.rfind("gidmapping=", 0) == 0) {
      gid_mapping = o.substr(11);
    } else if (o.rfind("timeout=", 0) == 0) {
      char* end = nullptr;
      double t = std::strtod(o.c_str() + 8, &end);
      if (end == nullptr || *end != '\0' || !(t >= 0)) {
        return Fail(Status::Invalid("-o " + o + ": expected a number of seconds"));
      }
      fs_options.entry_timeout = fs_options.attr_timeout = t;
    } else if (o.rfind("readahead=", 0) == 0) {
      char* end = nullptr;
      unsigned long kb = std::strtoul(o.c_str() + 10, &end, 10);
      if (end == nullptr || *end != '\0' || kb > (1u << 20)) {
        return Fail(Status::Invalid("-o " + o + ": expected KiB (0 keeps the kernel's default)"));
      }
      mount.readahead_kb = static_cast<unsigned>(kb);
    } else if (o.rfind("stats=", 0) == 0) {
      // The daemon works from /, so the path is made absolute here.
      std::string path = o.substr(6);
      if (path.empty()) return Fail(Status::Invalid("-o stats=: expected a file to write"));
      if (path[0] != '/') {
        char* cwd = ::getcwd(nullptr, 0);
        if (cwd != nullptr) path = std::string(cwd) + "/" + path;
        std::free(cwd);
      }
      const std::string dir = path.substr(0, path.rfind('/') + 1);
      if (::access(dir.c_str(), W_OK) != 0) {
        return Fail(Status::FromErrno(errno, "-o " + o + ": cannot write in " + dir));
      }
      mount.stats_path = path;
    } else if (o.rfind("max_read=", 0) == 0) {
      char* end = nullptr;
      unsigned long n = std::strtoul(o.c_str() + 9, &end, 10);
      if (end == nullptr || *end != '\0' || n == 0 || n > (1u << 30)) {
        return Fail(Status::Invalid("-o " + o + ": expected a number of bytes"));
      }
      fs_options.max_read = static_cast<unsigned>(n);
      mount.fuse_options.push_back(o);
    } else {
      mount.fuse_options.push_back(o);
    }
  }
  if (read_only && !args.scratch.empty()) {
    return Fail(Status::Invalid("--scratch: a read-only mount has no scratch directory"));
  }
  fs_options.read_only = read_only;
  if (args.owner == "self") {
    if (!uid_mapping.empty() || !gid_mapping.empty()) {
      return Fail(Status::Invalid("--owner=self and -o uidmapping/gidmapping exclude each other"));
    }
    fs_options.uid_map = IdMap::Self(::getuid());
    fs_options.gid_map = IdMap::Self(::getgid());
  } else if (args.owner != "image") {
    return Fail(Status::Invalid("--owner=" + args.owner + ": expected image or self"));
  }
  if (!uid_mapping.empty()) {
    auto m = IdMap::Parse(uid_mapping, "-o uidmapping");
    if (!m.ok()) return Fail(m.status());
    fs_options.uid_map = *m;
  }
  if (!gid_mapping.empty()) {
    auto m = IdMap::Parse(gid_mapping, "-o gidmapping");
    if (!m.ok()) return Fail(m.status());
    fs_options.gid_map = *m;
  }
  // Fail early on a mount that cannot happen, before any indexing work. A connection handed over
  // as /dev/fd/N is mounted already.
  if (HandedConnection(args.mountpoint) < 0) {
    Status mp = CheckMountpoint(args.mountpoint);
    if (mp.ok()) mp = CheckCanMount(args.mountpoint, mount.fuse_options);
    if (!mp.ok()) return Fail(mp);
    WarnIfNotEmpty(args.mountpoint);
  }

  auto image = OpenImage(args.image);
  if (!image.ok()) return Fail(image.status());
  const OpenedImage& opened = **image;
  LogInfo("{}: {} layers ({} indexed, {} verified), {} paths, ready in {:.1f} ms",
          args.image.image, opened.layers.size(), opened.stats.layers_indexed,
          opened.stats.layers_verified, opened.tree.visible_paths(), MsSince(start));

  // Indexing a large layer leaves freed heap behind; give it back before the daemon forks off with
  // a copy of this address space.
  ::malloc_trim(0);
  std::unique_ptr<WritableTree> writable;
  if (!read_only) {
    std::vector<std::string> layer_ids;
    for (const Layer& l : opened.layers) layer_ids.push_back(l.index.diff_id().str());
    auto scratch = args.scratch.empty() ? ScratchDir::CreateEphemeral(layer_ids)
                                        : ScratchDir::Open(args.scratch, layer_ids);
    if (!scratch.ok()) return Fail(scratch.status());
    writable = std::make_unique<WritableTree>(opened.tree, std::move(*scratch), native_owners);
    Status loaded = writable->Load();
    if (!loaded.ok()) return Fail(loaded);
    LogInfo("scratch directory {} (owners kept {})", writable->scratch().path(),
            native_owners ? "natively" : "in xattrs");
  }
  if (!fs_options.uid_map.identity() || !fs_options.gid_map.identity()) {
    LogInfo("owners shown: users {}, groups {}", fs_options.uid_map.Describe(),
            fs_options.gid_map.Describe());
  }
  Filesystem fs(opened.tree, fs_options, writable.get());
  mount.fsname = opened.spec.location;
  Status s = ServeMount(&fs, mount);
  if (!s.ok()) return Fail(s);
  return 0;
}

}  // namespace layerfs
