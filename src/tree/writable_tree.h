// WritableTree: the image's merged tree with a scratch directory on top; what a writable mount
// serves.
//
// Inode numbers. An inode of the image keeps the number the read-only mount gives it
// (MergedTree::InodeOf(node) + 1, at most node_count()), also after it is copied up or renamed.
// Inodes made through the mount, and those found in a scratch directory from an earlier mount,
// are numbered from node_count() + 1 up.
//
// State. An image inode nobody changed has no state here: it is answered from the merged tree, so
// untouched files cost what they cost in a read-only mount. The first change creates an Inode for
// it. Every directory that exists in scratch/upper has a DirState: its open directory, and in
// memory its upper entries and whiteouts, so lookups never list or probe the scratch directory.
//
// Copy-up. A change to an image file's metadata makes a metadata copy (an empty upper file with
// the metadata and an xattr naming the image path of its content); a change to its content then
// fills that file in place and drops the xattr, so the file keeps its inode and hard links, and a
// crash at any point leaves either the metadata copy or the whole file. A directory is copied up
// (made in work/ with its metadata, then renamed into place) before anything inside it changes;
// renaming a directory of the image copies up its whole subtree first (files as metadata copies)
// and makes it opaque, so a rename is never refused with EXDEV.
//
// Locking. `mu_` guards the namespace: the inode table, every DirState and every Inode's names.
// Changes to the namespace take it exclusively; lookups, getattr and readdir take it shared.
// Reading a file of the image nobody changed takes no lock; reading or writing one in the scratch
// directory takes it shared, only to open the upper file. Filling a file's content takes that Inode's
// `data_mu` (never while holding `mu_` exclusively), so a large copy-up stalls only that file.
#ifndef LAYERFS_TREE_WRITABLE_TREE_H_
#define LAYERFS_TREE_WRITABLE_TREE_H_

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/unique_fd.h"
#include "scratch/scratch_dir.h"
#include "tree/image_lookups.h"
#include "tree/merged_tree.h"
#include "tree/mount_tree.h"

namespace layerfs {

struct XattrTarget;

class WritableTree final : public MountTree {
 public:
  struct Inode;

  // `native_owners`: give files their owners and make device nodes in the scratch directory
  // itself (needs root); else keep them as overrides (see scratch_dir.h).
  WritableTree(const MergedTree& tree, ScratchDir scratch, bool native_owners);
  ~WritableTree();
  WritableTree(const WritableTree&) = delete;
  WritableTree& operator=(const WritableTree&) = delete;

  // Reads what an earlier mount left in the scratch directory.
  Status Load();

  const MergedTree& tree() const { return tree_; }
  ScratchDir& scratch() { return scratch_; }
  bool IsImageIno(Ino ino) const { return ino >= 1 && ino <= tree_.node_count(); }

  const MergedTree& image() const override { return tree_; }

  int Lookup(Ino parent, std::string_view name, struct stat* out) override;
  int GetAttr(Ino ino, struct stat* out, bool count = false) override;
  int SetAttr(Ino ino, const struct stat& attr, int to_set, struct stat* out) override;
  int Readlink(Ino ino, std::string* target) override;
  int Mknod(Ino parent, std::string_view name, mode_t mode, dev_t rdev, const Caller& caller,
            struct stat* out) override;
  int Mkdir(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
            struct stat* out) override;
  int Symlink(Ino parent, std::string_view name, std::string_view target, const Caller& caller,
              struct stat* out) override;
  int Link(Ino ino, Ino parent, std::string_view name, struct stat* out) override;
  int Unlink(Ino parent, std::string_view name) override;
  int Rmdir(Ino parent, std::string_view name) override;
  int Rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
             unsigned flags) override;

  // Files have no handles: the mount answers OPEN with ENOSYS (no round trip per open, and the
  // kernel keeps every file's page cache), and each read or write names the inode. A write copies
  // an image file up first.
  int Create(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
             struct stat* out) override;
  int ReadFrom(Ino ino, ReadSource* out) override;
  int Write(Ino ino, const void* data, size_t size, off_t offset, size_t* written) override;
  int Fsync(Ino ino, bool datasync) override;
  int Fallocate(Ino ino, int mode, off_t offset, off_t length) override;

  int ReadDir(Ino ino, uint64_t offset, size_t max, std::vector<DirItem>* out) override;

  int GetXattr(Ino ino, std::string_view name, std::string* value) override;
  int ListXattr(Ino ino, std::string* names) override;
  int SetXattr(Ino ino, std::string_view name, std::string_view value, int flags) override;
  int RemoveXattr(Ino ino, std::string_view name) override;

  int Statfs(struct statvfs* out) override;

  // An inode made through the mount with no names and no lookups left (the kernel holds one
  // while a file is open) is freed; a removed image file's scratch copy goes with its last lookup.
  void Forget(Ino ino, uint64_t count) override;

 private:
  // The kernel holds no more lookups of image inode `ino`.
  void ForgetImage(Ino ino);
  struct DirState;
  struct Name {
    Inode* dir;
    std::string name;
  };

  Inode* Find(Ino ino) const;  // REQUIRES: mu_ held
  Inode* FindUnlocked(Ino ino) const;
  Inode* Materialize(Ino ino);
  Inode* NewInode(mode_t type);
  uint32_t ImageNode(Ino ino) const { return static_cast<uint32_t>(ino - 1); }

  Ino Resolve(Ino parent, std::string_view name) const;
  Inode* ParentOf(Inode* dir);
  std::string NameOf(Inode* dir) const;
  uint32_t LowerDir(Ino dir) const;
  uint32_t LowerChild(Ino dir, std::string_view name) const;
  bool DirEmpty(Ino dir) const;
  // Appends names of `dir` from `offset` on while `out` holds fewer than `limit` entries.
  int ListFrom(Ino dir, uint64_t offset, size_t limit, std::vector<DirItem>* out) const;
  int StatLocked(Ino ino, struct stat* out) const;
  int UpperStat(Inode* in, struct stat* out) const;
  nlink_t CountSubdirs(const Inode* dir) const;
  int UpperAt(Inode* in, int* dirfd, std::string* name) const;
  int OpenUpper(Inode* in, int flags, UniqueFd* out) const;
  int WritableData(Ino ino, bool truncating, UniqueFd* out);
  XattrTarget XattrOf(Inode* in) const;

  int CopyUpDir(Inode* dir);
  int DetachDir(Inode* dir);
  int CopyUpMeta(Inode* in);
  int CopyUpOneName(Inode* in, Inode* parent, const std::string& name, bool with_data);
  int CopyContent(uint32_t node, int out) const;
  int FillData(Inode* in, bool truncate_to_zero);
  int CopyUpOrphan(Inode* in);
  int MakeWhiteout(Inode* dir, const std::string& name);
  void DropWhiteout(Inode* dir, const std::string& name);
  // Gives an object being made (by `fd` if open, else `name` below `dirfd`; its own type in upper/
  // is `upper_type`) the owner and mode `want`: natively when the daemon can, else as an override
  // (set in `over`).
  // Makes the device, fifo or socket `name` below `dirfd`: natively, or as an empty regular file
  // (opened into `fd`, `upper_type` set to S_IFREG) to carry an override.
  int MakeNode(int dirfd, const std::string& name, mode_t type, dev_t rdev, mode_t* upper_type,
               UniqueFd* fd);
  int SetOwnership(int fd, int dirfd, const std::string& name, mode_t upper_type,
                   const Override& want, std::optional<Override>* over);
  int ApplyImageMetadata(int fd, int dirfd, const std::string& name, uint32_t node,
                         mode_t upper_type, std::optional<Override>* over);
  int CheckNewName(Ino parent, std::string_view name) const;
  int CreateEntry(Ino parent, std::string_view name, mode_t mode, dev_t rdev,
                  std::string_view target, const Caller& caller, int open_flags,
                  struct stat* out, UniqueFd* opened);
  // Unlink and Rmdir: the inode `name` in `parent` names, checked to be of the kind removed (and
  // empty, for a directory), and its parent; then the parent copied up and the name whited out
  // where the image has it.
  int ToRemove(Ino parent, const std::string& name, bool dir, Inode** in, Inode** p);
  int HideFromImage(Inode* p, Ino parent, const std::string& name);
  void RemoveName(Inode* in, Inode* dir, std::string_view name);
  void MaybeFree(Inode* in);
  void CountLookup(Ino ino);  // REQUIRES: mu_ held
  int LoadDir(Inode* dir, std::unordered_map<uint64_t, Inode*>* by_upper_ino);
  const std::vector<uint32_t>& LinkGroup(uint32_t inode_node);

  const MergedTree& tree_;
  ImageLookups image_lookups_;  // of image inodes (those made through the mount count in Inode)
  ScratchDir scratch_;
  const bool native_ids_;  // owners and devices are kept natively, not as overrides

  mutable std::shared_mutex mu_;
  std::unique_ptr<std::atomic<Inode*>[]> image_;  // by node; null: untouched
  std::unordered_map<Ino, std::unique_ptr<Inode>> made_;
  Ino next_ino_;
  std::unordered_map<uint32_t, std::vector<uint32_t>> link_groups_;
  bool link_groups_built_ = false;
};

}  // namespace layerfs

#endif  // LAYERFS_TREE_WRITABLE_TREE_H_
