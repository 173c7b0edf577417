// What the files of WritableTree share (writable_tree.cc: the inode table and the namespace;
// writable_copy_up.cc; writable_data.cc: content, metadata and xattrs; writable_load.cc): the
// state of an inode and of an upper directory, and small helpers. Not for use outside them.
#ifndef LAYERFS_TREE_WRITABLE_TREE_INTERNAL_H_
#define LAYERFS_TREE_WRITABLE_TREE_INTERNAL_H_

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "scratch/scratch_dir.h"
#include "tar/whiteout.h"
#include "tree/writable_tree.h"

namespace layerfs {
namespace writable_internal {

constexpr uint32_t kNoNode = MergedTree::kNoNode;

inline int Errno() { return errno != 0 ? errno : EIO; }

// Keeps an upper directory's atime and mtime across a change the mount makes on its own account: a
// copy-up adds a name that was already visible, which must not show as a change of the directory.
class KeepTimes {
 public:
  explicit KeepTimes(int dirfd) : fd_(dirfd), ok_(::fstat(dirfd, &st_) == 0) {}
  ~KeepTimes() {
    if (!ok_) return;
    const struct timespec times[2] = {st_.st_atim, st_.st_mtim};
    ::futimens(fd_, times);
  }
  KeepTimes(const KeepTimes&) = delete;
  KeepTimes& operator=(const KeepTimes&) = delete;

 private:
  int fd_;
  struct stat st_;
  bool ok_;
};

inline std::string WhiteoutName(std::string_view name) {
  return std::string(kWhiteoutPrefix) + std::string(name);
}

// The override recorded on an upper object whose own type is `upper_type`, if it fits that type:
// a directory stays a directory; a file may stand for a device, fifo or socket.
inline std::optional<Override> OverrideFor(const std::string& path, mode_t upper_type) {
  std::optional<Override> o = ReadOverride(path);
  if (o && (upper_type == S_IFDIR) != S_ISDIR(o->mode)) return std::nullopt;
  return o;
}

inline bool PrivateXattr(std::string_view name) {
  return name.substr(0, kPrivateXattrPrefix.size()) == kPrivateXattrPrefix;
}

// Mode bits of a tree node's type.
inline mode_t TypeOf(const MergedTree& tree, uint32_t node) {
  struct stat st;
  tree.Stat(node, &st);
  return st.st_mode & S_IFMT;
}

}  // namespace writable_internal

// Where an xattr call reaches an upper object: its open directory, the path of its name below
// its directory's descriptor (not followed: it may be a symlink), or the file an orphan's
// descriptor stands for (followed: /proc/self/fd/N is the file itself).
struct XattrTarget {
  int fd = -1;
  std::string path;
  bool follow = false;

  ssize_t Get(const char* name, void* value, size_t size) const {
    if (fd >= 0) return ::fgetxattr(fd, name, value, size);
    return follow ? ::getxattr(path.c_str(), name, value, size)
                  : ::lgetxattr(path.c_str(), name, value, size);
  }
  ssize_t List(char* list, size_t size) const {
    if (fd >= 0) return ::flistxattr(fd, list, size);
    return follow ? ::listxattr(path.c_str(), list, size) : ::llistxattr(path.c_str(), list, size);
  }
  int Set(const char* name, const void* value, size_t size, int flags) const {
    if (fd >= 0) return ::fsetxattr(fd, name, value, size, flags);
    return follow ? ::setxattr(path.c_str(), name, value, size, flags)
                  : ::lsetxattr(path.c_str(), name, value, size, flags);
  }
  int Remove(const char* name) const {
    if (fd >= 0) return ::fremovexattr(fd, name);
    return follow ? ::removexattr(path.c_str(), name) : ::lremovexattr(path.c_str(), name);
  }
};

struct WritableTree::DirState {
  UniqueFd fd;                                         // the directory in upper/
  std::map<std::string, Inode*, std::less<>> entries;  // what upper/ holds, by name
  std::set<std::string, std::less<>> whiteouts;        // names with a `.wh.` file here
  bool opaque = false;                                 // holds `.wh..wh..opq`
  // The listing position of each name in `entries`, in the order the names arrived: a name the
  // directory merged below does not have is listed after that directory's names, in this order
  // (see ListFrom).
  std::map<uint64_t, std::string> order;
  std::map<std::string, uint64_t, std::less<>> seq;
  uint64_t next_seq = 0;

  void Put(const std::string& name, Inode* in) {
    entries[name] = in;
    if (seq.emplace(name, next_seq).second) order.emplace(next_seq++, name);
  }
  void Drop(std::string_view name) {
    auto e = entries.find(name);
    if (e != entries.end()) entries.erase(e);
    auto it = seq.find(name);
    if (it == seq.end()) return;
    order.erase(it->second);
    seq.erase(it);
  }
};

struct WritableTree::Inode {
  Inode(Ino i, uint32_t node) : ino(i), image_node(node) {}
  const Ino ino;
  const uint32_t image_node;         // the image inode's node, or kNoNode
  std::atomic<uint64_t> nlookup{0};  // inodes made through the mount only

  // Guarded by mu_.
  mode_t type = 0;
  bool upper = false;                        // exists in upper/ (a metadata copy counts)
  bool gone = false;                         // all its names were removed
  std::atomic<bool> metacopy{false};         // its content still comes from data_node
  uint32_t data_node = MergedTree::kNoNode;  // the image node with its content (image inodes)
  std::vector<Name> names;                   // its names in upper/
  UniqueFd orphan;                           // O_PATH to it after its last name was removed
  uint32_t lower_dir = MergedTree::kNoNode;  // directories: the image directory merged below
  std::unique_ptr<DirState> dir;             // directories in upper/
  std::optional<Override> over;              // owner, mode, device kept in user.layerfs.override

  std::mutex data_mu;  // filling in the content of a metadata copy
};

}  // namespace layerfs

#endif  // LAYERFS_TREE_WRITABLE_TREE_INTERNAL_H_
