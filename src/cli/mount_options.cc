#include "cli/mount_options.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace layerfs {
namespace {

// `text` as an unsigned number no larger than `max`, or nothing.
std::optional<unsigned long> Number(const std::string& text, unsigned long max) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long n = std::strtoul(text.c_str(), &end, 10);
  if (errno != 0 || end == nullptr || *end != '\0' || n > max) return std::nullopt;
  return n;
}

}  // namespace

std::optional<uint64_t> ParseSize(const std::string& text) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0 || end == nullptr) return std::nullopt;
  std::string_view unit(end);
  int shift = 0;
  if (unit == "") {
    shift = 0;
  } else if (unit == "K" || unit == "k" || unit == "KiB") {
    shift = 10;
  } else if (unit == "M" || unit == "MiB") {
    shift = 20;
  } else if (unit == "G" || unit == "GiB") {
    shift = 30;
  } else if (unit == "T" || unit == "TiB") {
    shift = 40;
  } else {
    return std::nullopt;
  }
  if (n > (~0ull >> shift)) return std::nullopt;
  return static_cast<uint64_t>(n) << shift;
}

namespace {

bool Prefixed(const std::string& o, std::string_view prefix, std::string* value) {
  if (o.rfind(prefix, 0) != 0) return false;
  *value = o.substr(prefix.size());
  return true;
}

}  // namespace

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

Result<MountPlan> PlanMount(const MountArgs& args, const MountingUser& who) {
  MountPlan plan;
  FsOptions& fs = plan.fs;
  MountOptions& mount = plan.mount;
  bool read_only = args.read_only;
  plan.native_owners = who.host_root;
  std::string uid_mapping, gid_mapping;
  mount.mountpoint = args.mountpoint;
  mount.foreground = args.foreground;
  mount.debug = args.debug;
  mount.single_thread = args.single_thread;
  mount.max_threads = args.threads;
  for (const std::string& o : SplitCommas(args.options)) {
    std::string value;
    if (o == "ro") {
      read_only = true;
    } else if (o == "rw") {
      read_only = false;
    } else if (o == "owners=native" || o == "owners=xattr") {
      plan.native_owners = o == "owners=native";
      if (plan.native_owners && who.euid != 0) {
        return Status::Invalid("-o owners=native: only root can give files their owners");
      }
    } else if (Prefixed(o, "uidmapping=", &uid_mapping) ||
               Prefixed(o, "gidmapping=", &gid_mapping)) {
    } else if (Prefixed(o, "timeout=", &value)) {
      char* end = nullptr;
      double t = std::strtod(value.c_str(), &end);
      if (value.empty() || end == nullptr || *end != '\0' || !(t >= 0)) {
        return Status::Invalid("-o " + o + ": expected a number of seconds");
      }
      fs.entry_timeout = fs.attr_timeout = t;
    } else if (Prefixed(o, "readahead=", &value)) {
      auto kb = Number(value, 1u << 20);
      if (!kb) return Status::Invalid("-o " + o + ": expected KiB (0 keeps the kernel's default)");
      mount.readahead_kb = static_cast<unsigned>(*kb);
    } else if (Prefixed(o, "stats=", &value)) {
      // The daemon works from /, so the path is made absolute here.
      if (value.empty()) return Status::Invalid("-o stats=: expected a file to write");
      if (value[0] != '/') value = who.cwd + "/" + value;
      const std::string dir = value.substr(0, value.rfind('/') + 1);
      if (::access(dir.c_str(), W_OK) != 0) {
        return Status::FromErrno(errno, "-o " + o + ": cannot write in " + dir);
      }
      mount.stats_path = value;
    } else if (Prefixed(o, "span=", &value)) {
      auto n = ParseSize(value);
      if (!n || *n < kMinSpan || *n > kMaxSpan) {
        return Status::Invalid("-o " + o + ": expected a size from 64K to 64M (e.g. 1M)");
      }
      plan.span = *n;
    } else if (Prefixed(o, "span_cache=", &value)) {
      auto n = ParseSize(value);
      if (!n) return Status::Invalid("-o " + o + ": expected a size (e.g. 64M; 0 keeps none)");
      plan.span_cache = *n;
    } else if (Prefixed(o, "max_read=", &value)) {
      auto n = Number(value, 1u << 30);
      if (!n || *n == 0) return Status::Invalid("-o " + o + ": expected a number of bytes");
      fs.max_read = static_cast<unsigned>(*n);
      mount.fuse_options.push_back(o);
    } else {
      mount.fuse_options.push_back(o);
    }
  }
  if (read_only && !args.scratch.empty()) {
    return Status::Invalid("--scratch: a read-only mount has no scratch directory");
  }
  fs.read_only = read_only;
  if (args.owner == "self") {
    if (!uid_mapping.empty() || !gid_mapping.empty()) {
      return Status::Invalid("--owner=self and -o uidmapping/gidmapping exclude each other");
    }
    fs.uid_map = IdMap::Self(who.uid);
    fs.gid_map = IdMap::Self(who.gid);
  } else if (args.owner != "image") {
    return Status::Invalid("--owner=" + args.owner + ": expected image or self");
  }
  if (!uid_mapping.empty()) {
    LAYERFS_ASSIGN_OR_RETURN(fs.uid_map, IdMap::Parse(uid_mapping, "-o uidmapping"));
  }
  if (!gid_mapping.empty()) {
    LAYERFS_ASSIGN_OR_RETURN(fs.gid_map, IdMap::Parse(gid_mapping, "-o gidmapping"));
  }
  return plan;
}

}  // namespace layerfs
