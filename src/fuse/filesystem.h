// Filesystem: the state a mounted image serves FUSE requests from (the session's userdata).
//
// It owns nothing of the image itself: the merged tree and the layers are built before the mount
// and outlive the session. What it adds is the per-inode lookup counts the kernel's FORGET
// requests settle, and the mount's options.
#ifndef LAYERFS_FUSE_FILESYSTEM_H_
#define LAYERFS_FUSE_FILESYSTEM_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "base/id_map.h"
#include "tree/merged_tree.h"
#include "tree/writable_tree.h"

namespace layerfs {

struct FsOptions {
  // How long the kernel may cache names and attributes. The layers never change under a mount,
  // so the default is long; `-o timeout=` shortens it.
  double entry_timeout = 86400.0;
  double attr_timeout = 86400.0;
  bool read_only = true;
  // -o max_read=N: the largest read request the kernel may send (0: the kernel's default).
  unsigned max_read = 0;
  // How the image's owners show (--owner=self, -o uidmapping=, gidmapping=).
  IdMap uid_map;
  IdMap gid_map;
};

class Filesystem {
 public:
  // `writable`: the scratch layer of a writable mount, or null for a read-only one.
  Filesystem(const MergedTree& tree, FsOptions options, WritableTree* writable = nullptr);

  const MergedTree& tree() const { return tree_; }
  WritableTree* writable() const { return writable_; }
  const FsOptions& options() const { return options_; }

  // Turns the image's owners in `st` into the ids the mount shows.
  void ShowIds(struct stat* st) const {
    if (ids_mapped_) {
      st->st_uid = options_.uid_map.ToHost(st->st_uid);
      st->st_gid = options_.gid_map.ToHost(st->st_gid);
    }
  }

  // Lookup counts, by node. The kernel holds `count` references to the inode after a reply that
  // carries it; FORGET gives them back. REQUIRES: node < tree().node_count().
  void AddLookup(uint32_t node) { Count(node).fetch_add(1, std::memory_order_relaxed); }
  // Returns false (and leaves the count at 0) if the kernel forgot more than it looked up.
  bool Forget(uint32_t node, uint64_t count);

  uint64_t LookupCount(uint32_t node) const {
    return std::atomic_ref<uint64_t>(nlookup_.get()[node]).load(std::memory_order_relaxed);
  }

 private:
  struct Free {
    void operator()(uint64_t* p) const { std::free(p); }
  };
  std::atomic_ref<uint64_t> Count(uint32_t node) const {
    return std::atomic_ref<uint64_t>(nlookup_.get()[node]);
  }

  const MergedTree& tree_;
  FsOptions options_;
  bool ids_mapped_;
  WritableTree* writable_;
  // calloc'd: pages stay unallocated zero pages until an inode is first looked up.
  std::unique_ptr<uint64_t, Free> nlookup_;
};

}  // namespace layerfs

#endif  // LAYERFS_FUSE_FILESYSTEM_H_
