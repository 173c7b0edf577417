// Counts of the FUSE requests a mount answers, by kind, and the time layerfs spent on them: with
// the cost of one round trip, they say how much of a workload's time is the kernel's traffic and
// how much is layerfs's own work (`layerfs mount -o stats=FILE`).
#ifndef LAYERFS_FUSE_REQUEST_STATS_H_
#define LAYERFS_FUSE_REQUEST_STATS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "fuse/ops.h"
#include "layerfs/status.h"

namespace layerfs {

// `ops` with every operation it has counted first (and timed) into this process's request
// statistics, plus IOCTL, which `ops` does not answer and libfuse would answer with ENOSYS
// uncounted: the same reply, now counted. Nothing else of the mount changes.
fuse_lowlevel_ops CountedOps(const fuse_lowlevel_ops& ops);

// The statistics so far as JSON: {"requests": {"LOOKUP": {"count": N, "ns": T}, ...},
// "total": {"count": N, "ns": T}}, kinds in the kernel's names, only those that came.
std::string RequestStatsJson();

// Counters of another part of the mount, written beside the requests as {"KEY": {"NAME": N, …}}
// (e.g. the span cache's hits and misses). The function is called when the statistics are written.
using StatsSection = std::function<std::vector<std::pair<std::string, uint64_t>>()>;
void AddStatsSection(std::string key, StatsSection section);

// Writes RequestStatsJson() to `path`, atomically.
Status WriteRequestStats(const std::string& path);

}  // namespace layerfs

#endif  // LAYERFS_FUSE_REQUEST_STATS_H_
