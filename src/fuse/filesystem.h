// Filesystem: what a mount's FUSE operations serve from (the session's userdata): the tree of the
// mount, and the options that shape the replies.
//
// It owns nothing of the image itself: the tree, the merged tree and the layers are built before
// the mount and outlive the session.
#ifndef LAYERFS_FUSE_FILESYSTEM_H_
#define LAYERFS_FUSE_FILESYSTEM_H_

#include <sys/stat.h>

#include "base/id_map.h"
#include "tree/mount_tree.h"

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
  Filesystem(MountTree& tree, FsOptions options)
      : tree_(tree),
        options_(options),
        ids_mapped_(!options_.uid_map.identity() || !options_.gid_map.identity()) {}

  MountTree& tree() const { return tree_; }
  const MergedTree& image() const { return tree_.image(); }
  const FsOptions& options() const { return options_; }

  // Turns the image's owners in `st` into the ids the mount shows.
  void ShowIds(struct stat* st) const {
    if (ids_mapped_) {
      st->st_uid = options_.uid_map.ToHost(st->st_uid);
      st->st_gid = options_.gid_map.ToHost(st->st_gid);
    }
  }

 private:
  MountTree& tree_;
  FsOptions options_;
  bool ids_mapped_;
};

}  // namespace layerfs

#endif  // LAYERFS_FUSE_FILESYSTEM_H_
