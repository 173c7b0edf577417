// MountTree: what a mount serves, whichever kind it is: the calls the FUSE operations make, by
// inode number. ImageTree (image_tree.h) serves an image read-only; WritableTree
// (writable_tree.h) serves it with a scratch directory on top. The FUSE operations (src/fuse/
// ops.cc) know only this interface.
//
// Every call returns 0 or an errno value. Calls that hand out an inode (Lookup, GetAttr with
// `count`, Link and those that create) count one lookup of it, which Forget gives back: the
// kernel's reference counts live in the tree, for every inode.
#ifndef LAYERFS_TREE_MOUNT_TREE_H_
#define LAYERFS_TREE_MOUNT_TREE_H_

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"
#include "tree/merged_tree.h"

namespace layerfs {

class MountTree {
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

  // Where the bytes of a read come from: an upper file (`fd`, open for this read), or else the
  // image node `node` (MergedTree::LayerOf/EntryOf) the content comes from.
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
  // Listing offsets, stable while the directory changes, so that a listing needs no handle (and
  // the kernel no OPENDIR): 0 and 1 are "." and "..", kListFirst + i the i-th name of the image
  // directory merged below (unless hidden), kListFirst + kListUpper + k the k-th name made in a
  // scratch directory that the image directory does not have. An entry removed meanwhile moves no
  // other, and a new one is listed after every name made before it (below 2^31, for 32-bit
  // programs, until 2^30 names were made in one directory).
  static constexpr uint64_t kListFirst = 2;
  static constexpr uint64_t kListUpper = uint64_t{1} << 30;

  virtual ~MountTree() = default;

  // The image below (reads of its files go to its layers).
  virtual const MergedTree& image() const = 0;

  virtual int Lookup(Ino parent, std::string_view name, struct stat* out) = 0;
  virtual int GetAttr(Ino ino, struct stat* out, bool count = false) = 0;
  // Gives back `count` lookups of `ino`.
  virtual void Forget(Ino ino, uint64_t count) = 0;
  virtual int Readlink(Ino ino, std::string* target) = 0;
  virtual int ReadFrom(Ino ino, ReadSource* out) = 0;
  // Appends to `out` at most `max` entries of directory `ino` from listing offset `offset` on,
  // "." and ".." included: ENOTDIR, or ENOENT for a directory removed meanwhile.
  virtual int ReadDir(Ino ino, uint64_t offset, size_t max, std::vector<DirItem>* out) = 0;
  virtual int GetXattr(Ino ino, std::string_view name, std::string* value) = 0;
  // The names, each followed by a NUL.
  virtual int ListXattr(Ino ino, std::string* names) = 0;
  virtual int Statfs(struct statvfs* out) = 0;

  // Changes (EROFS on a read-only tree).
  virtual int SetAttr(Ino ino, const struct stat& attr, int to_set, struct stat* out) = 0;
  virtual int Mknod(Ino parent, std::string_view name, mode_t mode, dev_t rdev,
                    const Caller& caller, struct stat* out) = 0;
  virtual int Mkdir(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
                    struct stat* out) = 0;
  virtual int Symlink(Ino parent, std::string_view name, std::string_view target,
                      const Caller& caller, struct stat* out) = 0;
  virtual int Link(Ino ino, Ino parent, std::string_view name, struct stat* out) = 0;
  virtual int Unlink(Ino parent, std::string_view name) = 0;
  virtual int Rmdir(Ino parent, std::string_view name) = 0;
  virtual int Rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
                     unsigned flags) = 0;
  virtual int Create(Ino parent, std::string_view name, mode_t mode, const Caller& caller,
                     struct stat* out) = 0;
  virtual int Write(Ino ino, const void* data, size_t size, off_t offset, size_t* written) = 0;
  virtual int Fsync(Ino ino, bool datasync) = 0;
  virtual int Fallocate(Ino ino, int mode, off_t offset, off_t length) = 0;
  virtual int SetXattr(Ino ino, std::string_view name, std::string_view value, int flags) = 0;
  virtual int RemoveXattr(Ino ino, std::string_view name) = 0;
};

}  // namespace layerfs

#endif  // LAYERFS_TREE_MOUNT_TREE_H_
