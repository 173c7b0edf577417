// ImageTree: an image served read-only, straight from its merged tree.
//
// Inode numbers: ino = node + 1, where node is the merged-tree node that stands for the inode
// (MergedTree::InodeOf), so FUSE_ROOT_ID (1) is the root node 0. Nodes are immutable and live as
// long as the mount, so no call takes a lock; FORGET only settles the lookup counts.
#ifndef LAYERFS_TREE_IMAGE_TREE_H_
#define LAYERFS_TREE_IMAGE_TREE_H_

#include "tree/image_lookups.h"
#include "tree/mount_tree.h"

namespace layerfs {

class ImageTree final : public MountTree {
 public:
  explicit ImageTree(const MergedTree& tree) : tree_(tree), lookups_(tree.node_count()) {}

  const MergedTree& image() const override { return tree_; }
  uint64_t LookupCount(Ino ino) const { return lookups_.Get(static_cast<uint32_t>(ino - 1)); }

  int Lookup(Ino parent, std::string_view name, struct stat* out) override;
  int GetAttr(Ino ino, struct stat* out, bool count = false) override;
  void Forget(Ino ino, uint64_t count) override;
  int Readlink(Ino ino, std::string* target) override;
  int ReadFrom(Ino ino, ReadSource* out) override;
  int ReadDir(Ino ino, uint64_t offset, size_t max, std::vector<DirItem>* out) override;
  int GetXattr(Ino ino, std::string_view name, std::string* value) override;
  int ListXattr(Ino ino, std::string* names) override;
  int Statfs(struct statvfs* out) override;

  int SetAttr(Ino, const struct stat&, int, struct stat*) override { return EROFS; }
  int Mknod(Ino, std::string_view, mode_t, dev_t, const Caller&, struct stat*) override {
    return EROFS;
  }
  int Mkdir(Ino, std::string_view, mode_t, const Caller&, struct stat*) override { return EROFS; }
  int Symlink(Ino, std::string_view, std::string_view, const Caller&, struct stat*) override {
    return EROFS;
  }
  int Link(Ino, Ino, std::string_view, struct stat*) override { return EROFS; }
  int Unlink(Ino, std::string_view) override { return EROFS; }
  int Rmdir(Ino, std::string_view) override { return EROFS; }
  int Rename(Ino, std::string_view, Ino, std::string_view, unsigned) override { return EROFS; }
  int Create(Ino, std::string_view, mode_t, const Caller&, struct stat*) override { return EROFS; }
  int Write(Ino, const void*, size_t, off_t, size_t*) override { return EROFS; }
  int Fsync(Ino, bool) override { return 0; }
  int Fallocate(Ino, int, off_t, off_t) override { return EROFS; }
  int SetXattr(Ino, std::string_view, std::string_view, int) override { return EROFS; }
  int RemoveXattr(Ino, std::string_view) override { return EROFS; }

 private:
  // The node inode `ino` stands for, or kNoNode for a number this tree never handed out.
  uint32_t NodeOf(Ino ino) const {
    return ino == 0 || ino > tree_.node_count() ? MergedTree::kNoNode
                                                : static_cast<uint32_t>(ino - 1);
  }

  const MergedTree& tree_;
  ImageLookups lookups_;
};

}  // namespace layerfs

#endif  // LAYERFS_TREE_IMAGE_TREE_H_
