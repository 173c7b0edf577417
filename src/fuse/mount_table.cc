#include "fuse/mount_table.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace layerfs {
namespace {

// Fields of /proc/self/mountinfo are octal-escaped (space is \040).
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace

std::optional<MountEntry> FindMount(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  return FindMountIn(in, path);
}

std::optional<MountEntry> FindMountIn(std::istream& in, const std::string& path) {
  std::string line;
  std::optional<MountEntry> found;
  while (std::getline(in, line)) {
    // ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    if (!(fields >> id >> parent >> dev >> root >> point) || Unescape(point) != path) continue;
    MountEntry e{dev, path, "", ""};
    std::string field;
    while (fields >> field && field != "-") {
    }
    fields >> e.fstype >> e.source;
    e.fstype = Unescape(e.fstype);
    e.source = Unescape(e.source);
    found = std::move(e);  // the last one is the mount on top
  }
  return found;
}

std::string AbsoluteMountPath(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    dir = p;
    name.clear();
  }
  char* real = ::realpath(dir.c_str(), nullptr);
  if (real == nullptr) return p;
  std::string out = real;
  std::free(real);
  if (name.empty()) return out;
  return out == "/" ? "/" + name : out + "/" + name;
}

}  // namespace layerfs
