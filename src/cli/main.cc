// layerfs: mount a container image straight from its layer tars.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "base/log.h"
#include "fuse/session.h"
#include "index/layer_store.h"
#include "oci/manifest.h"
#include "tar/tar_reader.h"
#include "tree/merged_tree.h"

namespace layerfs {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

int Fail(const Status& s) {
  LogError("{}", s.message());
  return 1;
}

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

struct MountArgs {
  std::string image;
  std::string mountpoint;
  std::string cache;
  std::string ref;
  std::string platform;
  std::vector<std::string> options;
  bool read_only = false;
  bool foreground = false;
  bool debug = false;
  bool single_thread = false;
  unsigned threads = 0;
};

int RunMount(const MountArgs& args) {
  auto start = Clock::now();
  FsOptions fs_options;
  MountOptions mount;
  mount.mountpoint = args.mountpoint;
  mount.foreground = args.foreground;
  mount.debug = args.debug;
  mount.single_thread = args.single_thread;
  mount.max_threads = args.threads;
  for (const std::string& o : SplitCommas(args.options)) {
    if (o == "ro") {
      continue;  // every mount is read-only for now
    } else if (o == "rw") {
      return Fail(Status::Unsupported("-o rw: writable mounts are not supported yet"));
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
  // Fail early on a bad mountpoint, before any indexing work.
  Status mp = CheckMountpoint(args.mountpoint);
  if (!mp.ok()) return Fail(mp);

  LoadOptions load;
  load.ref = args.ref;
  load.platform = args.platform;
  auto image = LoadImage(args.image, load);
  if (!image.ok()) return Fail(image.status());
  LogDebug("manifests read: {:.1f} ms", MsSince(start));

  LayerStore store(args.cache.empty() ? LayerStore::DefaultDir() : args.cache);
  StoreStats stats;
  auto layers = store.LoadAll(image->layers, 0, &stats);
  if (!layers.ok()) return Fail(layers.status());
  LogDebug("layers loaded: {:.1f} ms", MsSince(start));
  for (const Layer& l : *layers) {
    for (const std::string& w : l.warnings) LogWarning("{}: {}", l.label, w);
  }
  auto tree = MergedTree::Build(*layers);
  if (!tree.ok()) return Fail(tree.status());
  LogDebug("merged tree built: {:.1f} ms, {} nodes, {} KiB", MsSince(start), tree->node_count(),
           tree->memory_bytes() / 1024);
  for (const std::string& w : tree->warnings()) LogWarning("{}", w);
  LogInfo("{}: {} layers ({} indexed, {} verified), {} paths, ready in {:.1f} ms", args.image,
          layers->size(), stats.layers_indexed, stats.layers_verified, tree->visible_count(),
          MsSince(start));

  Filesystem fs(*tree, fs_options);
  mount.fsname = image->location;
  Status s = ServeMount(&fs, mount);
  if (!s.ok()) return Fail(s);
  return 0;
}

}  // namespace
}  // namespace layerfs

int main(int argc, char** argv) {
  using namespace layerfs;
  InitArchiveLocale();

  CLI::App app{"layerfs: mount a container image straight from its layer tars"};
  app.require_subcommand(1);
  app.fallthrough();  // -v and -q also after the subcommand
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "Say more (repeat for debug output)");
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "Print errors only");

  MountArgs m;
  CLI::App* mount = app.add_subcommand("mount", "Mount IMAGE at MOUNTPOINT");
  mount->add_option("IMAGE", m.image,
                    "manifest.json of a docker-save directory, an image directory (docker save "
                    "or OCI layout), or an image archive (docker save -o image.tar)")
      ->required();
  mount->add_option("MOUNTPOINT", m.mountpoint, "Existing directory to mount on")->required();
  mount->add_option("--cache", m.cache,
                    "Cache directory for layer indexes and uncompressed copies of compressed "
                    "layers (default: $XDG_CACHE_HOME/layerfs or ~/.cache/layerfs)");
  mount->add_option("--ref", m.ref,
                    "Which image to mount when there are several: an OCI ref name "
                    "(org.opencontainers.image.ref.name) or a docker RepoTag");
  mount->add_option("--platform", m.platform,
                    "OS/ARCH[/VARIANT] to pick from a multi-platform index (default: this host)");
  mount->add_flag("--read-only", m.read_only, "Mount read-only (every mount is, for now)");
  mount->add_flag("-f,--foreground", m.foreground, "Stay in the foreground until unmounted");
  mount->add_flag("-d,--debug", m.debug, "Log every FUSE request to stderr (implies -f)");
  mount->add_option("-o", m.options,
                    "Mount options, comma-separated: ro; timeout=SECONDS (kernel caching of "
                    "names and attributes, default 86400); readahead=KIB (as root, the "
                    "mount's read-ahead, default 1024; 0 keeps the kernel's); and FUSE options "
                    "such as allow_other, allow_root, max_read=N")
      ->allow_extra_args(false);
  mount->add_option("--threads", m.threads, "Most worker threads serving requests (default 10)");
  mount->add_flag("--single-thread", m.single_thread, "Serve requests on one thread");

  std::string umount_point;
  bool lazy = false;
  CLI::App* umount = app.add_subcommand("umount", "Unmount a layerfs mount");
  umount->add_option("MOUNTPOINT", umount_point, "Mount point")->required();
  umount->add_flag("-z,--lazy", lazy, "Detach now, clean up when no longer busy");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  SetLogLevel(quiet            ? LogLevel::kError
              : verbosity >= 2 ? LogLevel::kDebug
              : verbosity == 1 ? LogLevel::kInfo
                               : LogLevel::kWarning);

  if (mount->parsed()) return RunMount(m);
  if (umount->parsed()) {
    Status s = Unmount(umount_point, lazy);
    if (!s.ok()) {
      LogError("{}", s.message());
      return 1;
    }
    return 0;
  }
  return 2;
}
