// layerfs bench: how fast are path lookups in this image, through the merged index, layer by
// layer (what an overlay without a merged index does), and through a real mount.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/log.h"
#include "cli/commands.h"
#include "fuse/session.h"
#include "fuse/unmount.h"
#include "tree/layer_stack.h"

namespace layerfs {
namespace {

using Json = nlohmann::json;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Summary {
  double p50_ns = 0;
  double p99_ns = 0;
  double mean_ns = 0;
  size_t count = 0;

  Json ToJson() const {
    return {{"p50_ns", p50_ns}, {"p99_ns", p99_ns}, {"mean_ns", mean_ns}, {"count", count}};
  }
};

Summary Summarize(std::vector<int64_t> samples) {
  Summary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  s.p50_ns = static_cast<double>(samples[samples.size() / 2]);
  s.p99_ns = static_cast<double>(samples[std::min(samples.size() - 1, samples.size() * 99 / 100)]);
  double sum = 0;
  for (int64_t v : samples) sum += static_cast<double>(v);
  s.mean_ns = sum / static_cast<double>(samples.size());
  return s;
}

// What one call of the clock costs, to take out of every sample.
int64_t TimerOverhead() {
  std::vector<int64_t> samples;
  for (int i = 0; i < 10000; ++i) {
    int64_t t0 = NowNs();
    samples.push_back(NowNs() - t0);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// Times fn(path) for every path, `passes` times over, in a fixed shuffled order.
template <typename Fn>
Summary TimeEach(const std::vector<std::string>& paths, unsigned passes, int64_t overhead, Fn fn) {
  std::vector<int64_t> samples;
  samples.reserve(paths.size() * passes);
  for (unsigned pass = 0; pass < passes; ++pass) {
    for (const std::string& p : paths) {
      int64_t t0 = NowNs();
      fn(p);
      samples.push_back(std::max<int64_t>(0, NowNs() - t0 - overhead));
    }
  }
  return Summarize(std::move(samples));
}

std::string FormatNs(double ns) {
  if (ns < 1000) return fmt::format("{:.0f} ns", ns);
  if (ns < 1e6) return fmt::format("{:.1f} µs", ns / 1e3);
  return fmt::format("{:.1f} ms", ns / 1e6);
}

// Every visible path of the merged view ("" is the root, left out), depth first.
std::vector<std::string> AllPaths(const MergedTree& tree) {
  std::vector<std::string> out;
  std::vector<std::pair<uint32_t, std::string>> stack = {{MergedTree::kRoot, ""}};
  while (!stack.empty()) {
    auto [node, path] = std::move(stack.back());
    stack.pop_back();
    for (uint32_t child : tree.Children(node)) {
      std::string p = path.empty() ? std::string(tree.Name(child))
                                   : path + "/" + std::string(tree.Name(child));
      if (tree.IsDir(child)) stack.emplace_back(child, p);
      out.push_back(std::move(p));
    }
  }
  return out;
}

struct MountResult {
  Summary lstat;
  Summary statfs;  // the kernel sends every statfs to the daemon: one round trip, little work
  uint64_t files = 0;
  uint64_t bytes = 0;
  double read_seconds = 0;
};

// How many statfs calls time one FUSE round trip.
constexpr size_t kRoundTrips = 2000;

// Mounts the image with this same binary (in the background, returning once ready), lstats every
// path and reads every regular file, then unmounts.
Result<MountResult> BenchMount(const BenchArgs& args, const OpenedImage& image,
                               const std::vector<std::string>& paths, int64_t overhead) {
  char dir[] = "/tmp/layerfs-bench-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return Status::FromErrno(errno, "mkdtemp");
  const std::string mnt = dir;
  std::vector<std::string> argv = {"/proc/self/exe", "mount", "-q"};
  if (!args.image.cache.empty()) argv.insert(argv.end(), {"--cache", args.image.cache});
  if (!args.image.ref.empty()) argv.insert(argv.end(), {"--ref", args.image.ref});
  if (!args.image.platform.empty()) argv.insert(argv.end(), {"--platform", args.image.platform});
  argv.insert(argv.end(), {args.image.image, mnt});
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(errno, "fork");
  if (pid == 0) {
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::rmdir(mnt.c_str());
    return Status::Error(EIO, "could not mount the image for the benchmark");
  }

  MountResult r;
  std::vector<std::string> full;
  full.reserve(paths.size());
  for (const std::string& p : paths) full.push_back(mnt + "/" + p);
  struct stat st;
  // One pass: after it the kernel answers from its caches, which is not what is measured here.
  r.lstat = TimeEach(full, 1, overhead, [&](const std::string& p) { ::lstat(p.c_str(), &st); });
  std::vector<char> buf(1 << 20);
  const int64_t t0 = NowNs();
  for (size_t i = 0; i < paths.size(); ++i) {
    uint32_t node = image.tree.LookupPath(paths[i]);
    if (node == MergedTree::kNoNode ||
        static_cast<EntryType>(image.tree.EntryOf(node).type) != EntryType::kRegular) {
      continue;
    }
    int fd = ::open(full[i].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n;
    while ((n = ::read(fd, buf.data(), buf.size())) > 0) r.bytes += static_cast<uint64_t>(n);
    ::close(fd);
    ++r.files;
  }
  r.read_seconds = static_cast<double>(NowNs() - t0) / 1e9;
  struct statfs sfs;
  r.statfs = TimeEach(std::vector<std::string>(kRoundTrips, mnt), 1, overhead,
                      [&](const std::string& p) { ::statfs(p.c_str(), &sfs); });
  Status u = Unmount(mnt, false);
  if (!u.ok()) u = Unmount(mnt, true);
  ::rmdir(mnt.c_str());
  LAYERFS_RETURN_IF_ERROR(u);
  return r;
}

}  // namespace

int RunBench(const BenchArgs& args) {
  auto opened = OpenImage(args.image);
  if (!opened.ok()) return Fail(opened.status());
  const OpenedImage& image = **opened;
  const MergedTree& tree = image.tree;

  std::vector<std::string> paths = AllPaths(tree);
  std::shuffle(paths.begin(), paths.end(), std::mt19937_64(42));
  const int64_t overhead = TimerOverhead();
  const size_t layers = image.layers.size();

  // The two must agree on what exists; a disagreement is a bug worth reporting, not timing.
  size_t disagreements = 0;
  for (const std::string& p : paths) {
    uint32_t node = tree.LookupPath(p);
    StackHit hit = StackLookup(image.layers, layers, p);
    if ((node != MergedTree::kNoNode) != hit.found()) ++disagreements;
  }
  if (disagreements > 0) {
    LogWarning("{} paths resolve differently through the merged tree and layer by layer",
               disagreements);
  }

  Summary merged = TimeEach(paths, args.passes, overhead, [&](const std::string& p) {
    volatile uint32_t n = tree.LookupPath(p);
    (void)n;
  });
  Summary stacked = TimeEach(paths, args.passes, overhead, [&](const std::string& p) {
    volatile uint32_t e = StackLookup(image.layers, layers, p).entry;
    (void)e;
  });
  std::optional<MountResult> mounted;
  if (args.mount) {
    auto r = BenchMount(args, image, paths, overhead);
    if (!r.ok()) return Fail(r.status());
    mounted = std::move(r).value();
  }

  if (args.json) {
    Json out = {{"image", image.spec.location},
                {"layers", layers},
                {"paths", paths.size()},
                {"passes", args.passes},
                {"open_ms", image.ms_to_open},
                {"merged", merged.ToJson()},
                {"layer_by_layer", stacked.ToJson()}};
    if (mounted) {
      out["mount"] = {{"lstat", mounted->lstat.ToJson()},
                      {"round_trip", mounted->statfs.ToJson()},
                      {"read", {{"files", mounted->files},
                                {"bytes", mounted->bytes},
                                {"seconds", mounted->read_seconds}}}};
    }
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("{}: {} layers, {} paths, opened in {:.1f} ms\n\n", image.spec.location, layers,
             paths.size(), image.ms_to_open);
  fmt::print("{:<44} {:>10} {:>10} {:>10}\n", "lookup of every path", "p50", "p99", "mean");
  auto row = [](const std::string& what, const Summary& s) {
    fmt::print("{:<44} {:>10} {:>10} {:>10}\n", what, FormatNs(s.p50_ns), FormatNs(s.p99_ns),
               FormatNs(s.mean_ns));
  };
  row("merged index (one probe per name)", merged);
  row(fmt::format("layer by layer ({} layers, top first)", layers), stacked);
  if (mounted) {
    row("mount: lstat (fresh mount, no kernel cache)", mounted->lstat);
    row("mount: statfs (one FUSE round trip)", mounted->statfs);
    double mb = static_cast<double>(mounted->bytes) / 1e6;
    fmt::print("\nmount: read every file: {} files, {:.1f} MB in {:.2f} s ({:.0f} MB/s)\n",
               mounted->files, mb, mounted->read_seconds,
               mounted->read_seconds > 0 ? mb / mounted->read_seconds : 0.0);
  }
  fmt::print("\nmerged index vs layer by layer: {:.1f}x faster (mean)\n",
             merged.mean_ns > 0 ? stacked.mean_ns / merged.mean_ns : 0.0);
  return 0;
}

}  // namespace layerfs
