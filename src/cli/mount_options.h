// The options of `layerfs mount`, checked and turned into what the filesystem and the session
// take. No side effects but reading the file system (the -o stats= directory must be writable).
#ifndef LAYERFS_CLI_MOUNT_OPTIONS_H_
#define LAYERFS_CLI_MOUNT_OPTIONS_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "blob/checkpoints.h"
#include "blob/span_cache.h"
#include "cli/commands.h"
#include "fuse/filesystem.h"
#include "fuse/session.h"
#include "layerfs/status.h"

namespace layerfs {

// Who is mounting: what the defaults and the checks depend on.
struct MountingUser {
  uid_t uid = 0;
  gid_t gid = 0;
  uid_t euid = 0;
  bool host_root = false;  // root of the initial user namespace (preflight.h: IsHostRoot)
  std::string cwd;         // relative -o stats= paths are made absolute from here
};

struct MountPlan {
  FsOptions fs;
  MountOptions mount;
  // Owners and device nodes in the scratch directory: natively when this process can give a file
  // any owner and make any device (root of the initial user namespace), else as xattrs.
  bool native_owners = false;
  // -o span=: the distance between checkpoints of compressed layers (0: the default, and a cached
  // index keeps its own); -o span_cache=: the memory for decompressed spans.
  uint64_t span = 0;
  uint64_t span_cache = kDefaultSpanCache;
};

// The plan for the mount `args` asks for (its image aside), or one error naming the option at
// fault.
Result<MountPlan> PlanMount(const MountArgs& args, const MountingUser& who);

// A size: digits, then nothing (bytes) or K, M, G, T (binary multiples; KiB etc. too).
std::optional<uint64_t> ParseSize(const std::string& text);

// Each -o argument split at its commas, empty items dropped.
std::vector<std::string> SplitCommas(const std::vector<std::string>& options);

}  // namespace layerfs

#endif  // LAYERFS_CLI_MOUNT_OPTIONS_H_
