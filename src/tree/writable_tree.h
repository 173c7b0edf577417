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
#include "tree/merged_tree.h"

namespace layerfs {

struct XattrTarget;

class WritableTree {
 public:
  using Ino = uint64_t;

  // Which attributes SetAttr changes (the values of FUSE_SET_ATTR_*).
  enum SetAttrBits : int {
    kSetMode = 1 << 0,
    kSetUid = 1 << 1,
    kSetGid = 1 << 2,
    kSetSize = 1 << 3,
    kSetAtime = 1 << 4,
    kSetMtime = 1 << 5,
    kSetAtimeNow = 1 << 7,
    kSetMtimeNow = 1 << 8,
    kSetCtime = 1 << 10,
  };

  // Who is asking: owner of what they create. `umask` is applied by the kernel already.
  struct Caller {
    uid_t uid = 0;
    gid_t gid = 0;
  };

  struct Inode;
  // Where the bytes of a read come from: the upper file (`fd`, open for this read), or else the
  // image node `node` (MergedTree::LayerOf/EntryOf) the content still comes from.
  struct ReadSource {
    UniqueFd fd;
    uint32_t node = MergedTree::kNoNode;
  };
  // One entry of a listing, and the offset that follows it (readdir's cookie).
  struct DirItem {
    std::string name;
    Ino ino;
    mode_t type;
    uint64_t next;
  };
  // Listing offsets, stable while the directory changes, so that a listing needs no handle: 0
  // and 1 are "." and "..", kListFirst + i the i-th name of the image directory merged below
  // (unless hidden), kListFirst + kListUpper + k the k-th name made in the scratch directory that
  // the image directory does not have. An entry removed meanwhile moves no other, and a new one is
  // listed after every name made before it (below 2^31, for 32-bit programs, until 2^30 names
  // were made in one directory).
  static constexpr uint64_t kListFirst = 2;
  static constexpr uint64_t kListUpper = uint64_t{1} << 30;

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

  // Every call returns 0 or an errno value. Calls that hand out an inode (Lookup, GetAttr with
  // `count`, and those that create) count a lookup of it when it is one made through the mount;
  // lookups of image inodes are the caller's to count.
  int Lookup(Ino parent, std::string_view name, struct stat* out);
  int GetAttr(Ino ino, struct stat* out, bool count = false);
  int SetAttr(Ino ino, const struct stat& attr, int to_set, struct stat* out);
  int Readlink(Ino ino, std::string* target);
  int Mknod(Ino parent, std::string_view name, mode_t mode, dev_t rdev, const Caller& caller,
            struct stat* out);
  int Mkdir(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
            struct stat* out);
  int Symlink(Ino parent, std::string_view name, std::string_view target, const Caller& caller,
              struct stat* out);
  int Link(Ino ino, Ino parent, std::string_view name, struct stat* out);
  int Unlink(Ino parent, std::string_view name);
  int Rmdir(Ino parent, std::string_view name);
  int Rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
             unsigned flags);

  // Files have no handles: the mount answers OPEN with ENOSYS (no round trip per open, and the
  // kernel keeps every file's page cache), and each read or write names the inode. A write copies
  // an image file up first.
  int Create(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
             struct stat* out);
  int ReadFrom(Ino ino, ReadSource* out);
  int Write(Ino ino, const void* data, size_t size, off_t offset, size_t* written);
  int Fsync(Ino ino, bool datasync);
  int Fallocate(Ino ino, int mode, off_t offset, off_t length);

  // Appends to `out` at most `max` entries of directory `ino` from listing offset `offset` on
  // (not "." and ".."): ENOTDIR, or ENOENT for a directory removed meanwhile.
  int ReadDir(Ino ino, uint64_t offset, size_t max, std::vector<DirItem>* out);

  int GetXattr(Ino ino, std::string_view name, std::string* value);
  int ListXattr(Ino ino, std::string* names);
  int SetXattr(Ino ino, std::string_view name, std::string_view value, int flags);
  int RemoveXattr(Ino ino, std::string_view name);

  int Statfs(struct statvfs* out);

  // Gives back lookups of an inode made through the mount: one with no names and no lookups (the
  // kernel holds one while a file is open) is freed.
  void Forget(Ino ino, uint64_t count);
  // The kernel holds no more lookups of image inode `ino` (counted by the caller).
  void ForgetImage(Ino ino);


 private:
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
  int ListFrom(Ino dir, uint64_t offset, size_t max, std::vector<DirItem>* out) const;
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
  void RemoveName(Inode* in, Inode* dir, std::string_view name);
  void MaybeFree(Inode* in);
  int LoadDir(Inode* dir, std::unordered_map<uint64_t, Inode*>* by_upper_ino);
  const std::vector<uint32_t>& LinkGroup(uint32_t inode_node);

  const MergedTree& tree_;
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
