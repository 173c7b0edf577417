#include "fuse/request_stats.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/file_util.h"

namespace layerfs {
namespace {

struct Counter {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> ns{0};
};

// One counter per operation of fuse_lowlevel_ops that answers requests, in the kernel's names.
#define LAYERFS_REQUEST_KINDS(X)                                                              \
  X(lookup, LOOKUP) X(forget, FORGET) X(forget_multi, BATCH_FORGET) X(getattr, GETATTR)        \
  X(setattr, SETATTR) X(readlink, READLINK) X(mknod, MKNOD) X(mkdir, MKDIR) X(unlink, UNLINK)  \
  X(rmdir, RMDIR) X(symlink, SYMLINK) X(rename, RENAME) X(link, LINK) X(open, OPEN)            \
  X(read, READ) X(write, WRITE) X(write_buf, WRITE_BUF) X(flush, FLUSH) X(release, RELEASE)   \
  X(fsync, FSYNC) X(opendir, OPENDIR) X(readdir, READDIR) X(readdirplus, READDIRPLUS)          \
  X(releasedir, RELEASEDIR) X(fsyncdir, FSYNCDIR) X(statfs, STATFS) X(setxattr, SETXATTR)      \
  X(getxattr, GETXATTR) X(listxattr, LISTXATTR) X(removexattr, REMOVEXATTR) X(access, ACCESS)  \
  X(create, CREATE) X(getlk, GETLK) X(setlk, SETLK) X(bmap, BMAP) X(ioctl, IOCTL) X(poll, POLL) \
  X(fallocate, FALLOCATE) X(flock, FLOCK) X(copy_file_range, COPY_FILE_RANGE) X(lseek, LSEEK)

enum Kind : int {
#define LAYERFS_KIND_ENUM(member, name) k_##member,
  LAYERFS_REQUEST_KINDS(LAYERFS_KIND_ENUM) kKinds
#undef LAYERFS_KIND_ENUM
};

constexpr const char* kNames[] = {
#define LAYERFS_KIND_NAME(member, name) #name,
    LAYERFS_REQUEST_KINDS(LAYERFS_KIND_NAME)
#undef LAYERFS_KIND_NAME
};

Counter g_counters[kKinds];
fuse_lowlevel_ops g_inner;  // what the counting operations call

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

template <auto Member, Kind K, typename F>
struct Counted;
template <auto Member, Kind K, typename... Args>
struct Counted<Member, K, void (*)(Args...)> {
  static void Call(Args... args) {
    const uint64_t start = NowNs();
    (g_inner.*Member)(args...);
    g_counters[K].count.fetch_add(1, std::memory_order_relaxed);
    g_counters[K].ns.fetch_add(NowNs() - start, std::memory_order_relaxed);
  }
};

// What libfuse answers an IOCTL with when the file system has no ioctl operation.
void NoIoctl(fuse_req_t req, fuse_ino_t, unsigned int, void*, fuse_file_info*, unsigned,
             const void*, size_t, size_t) {
  fuse_reply_err(req, ENOSYS);
}

}  // namespace

fuse_lowlevel_ops CountedOps(const fuse_lowlevel_ops& ops) {
  g_inner = ops;
  if (g_inner.ioctl == nullptr) g_inner.ioctl = NoIoctl;
  fuse_lowlevel_ops out = g_inner;
#define LAYERFS_COUNT(member, name)                                                            \
  if (g_inner.member != nullptr) {                                                             \
    out.member = &Counted<&fuse_lowlevel_ops::member, k_##member, decltype(g_inner.member)>::Call; \
  }
  LAYERFS_REQUEST_KINDS(LAYERFS_COUNT)
#undef LAYERFS_COUNT
  return out;
}

namespace {
std::mutex g_sections_mu;
std::vector<std::pair<std::string, StatsSection>>& Sections() {
  static auto* sections = new std::vector<std::pair<std::string, StatsSection>>();
  return *sections;
}
}  // namespace

void AddStatsSection(std::string key, StatsSection section) {
  std::lock_guard<std::mutex> lock(g_sections_mu);
  Sections().emplace_back(std::move(key), std::move(section));
}

std::string RequestStatsJson() {
  nlohmann::json requests = nlohmann::json::object();
  uint64_t count = 0, ns = 0;
  for (int k = 0; k < kKinds; ++k) {
    const uint64_t c = g_counters[k].count.load(std::memory_order_relaxed);
    const uint64_t t = g_counters[k].ns.load(std::memory_order_relaxed);
    if (c == 0) continue;
    requests[kNames[k]] = {{"count", c}, {"ns", t}};
    count += c;
    ns += t;
  }
  nlohmann::json out{{"requests", requests}, {"total", {{"count", count}, {"ns", ns}}}};
  std::lock_guard<std::mutex> lock(g_sections_mu);
  for (const auto& [key, section] : Sections()) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, value] : section()) j[name] = value;
    out[key] = std::move(j);
  }
  return out.dump(2) + "\n";
}

Status WriteRequestStats(const std::string& path) {
  return WriteFileAtomic(path, RequestStatsJson(), 0644);
}

}  // namespace layerfs
