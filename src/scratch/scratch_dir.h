// ScratchDir: the writable layer of a mount, on disk.
//
//   SCRATCH/layerfs-scratch.json   {"format": 1, "layers": ["sha256:…", …]}: the image it belongs to
//   SCRATCH/upper/                 the changes, laid out as the layer `layerfs commit` will write
//   SCRATCH/work/                  copy-ups in progress; emptied at every mount
//   SCRATCH/lock                   held (flock) by the mount using the directory
//
// upper/ holds every file, directory, symlink and device created or changed through the mount, at
// its path in the mount, with its metadata. A deletion is an empty regular file `.wh.NAME` beside
// where NAME was; a directory whose lower contents are gone (deleted and made again, or renamed
// in) holds an empty file `.wh..wh..opq`. Both are the OCI layer whiteouts, so no device nodes
// (and no root) are needed to record them. A regular file whose metadata changed but not its
// content is a metadata copy: an empty file with the xattr `user.layerfs.metacopy` naming the
// image path its content still comes from.
//
// A mount that cannot give files away (not root) keeps the owner, mode and device number it shows
// in the xattr `user.layerfs.override` ("UID:GID:MODE:MAJOR:MINOR", MODE in octal with the file
// type bits) of upper files and directories, whose own modes then always let the daemon in; a
// device node, fifo or socket it cannot make is an empty regular file with that xattr.
//
// The directory must be used by one mount at a time, and not changed behind its back.
#ifndef LAYERFS_SCRATCH_SCRATCH_DIR_H_
#define LAYERFS_SCRATCH_SCRATCH_DIR_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"
#include "layerfs/status.h"

namespace layerfs {

// layerfs's own xattrs on scratch files: never shown through the mount, never committed.
inline constexpr std::string_view kPrivateXattrPrefix = "user.layerfs.";
inline constexpr std::string_view kMetacopyXattr = "user.layerfs.metacopy";
inline constexpr std::string_view kOverrideXattr = "user.layerfs.override";

// What `user.layerfs.override` records.
struct Override {
  uint32_t uid = 0;
  uint32_t gid = 0;
  mode_t mode = 0;  // file type and permission bits
  dev_t rdev = 0;

  std::string Encode() const;
  // False for a value that is not one Encode() writes.
  static bool Decode(std::string_view text, Override* out);
};

// The override recorded on the file or directory at `path` (followed), if a valid one.
std::optional<Override> ReadOverride(const std::string& path);
inline constexpr int kScratchFormat = 1;

class ScratchDir {
 public:
  ScratchDir() = default;
  ScratchDir(ScratchDir&&) noexcept = default;
  ScratchDir& operator=(ScratchDir&&) noexcept = default;
  ~ScratchDir();

  // Opens (creating it if needed) the scratch directory `path` for the image whose layers are
  // `layers` (diff_ids, bottom first). A directory that belongs to another image, of another
  // format, or in use by another mount is refused. With `create` false, `path` must already be a
  // scratch directory.
  static Result<ScratchDir> Open(const std::string& path, const std::vector<std::string>& layers,
                                 bool create = true);
  // A new scratch directory under $TMPDIR (default /var/tmp), removed with its contents when this
  // object is destroyed.
  static Result<ScratchDir> CreateEphemeral(const std::vector<std::string>& layers);

  const std::string& path() const { return path_; }
  int upper_fd() const { return upper_.get(); }
  int work_fd() const { return work_.get(); }
  // Whether upper/ keeps user.* xattrs (metadata copies need them; without, copy-up copies data).
  bool xattrs() const { return xattrs_; }
  // Whether upper/ was made by this Open (and so holds no changes yet).
  bool fresh() const { return fresh_; }

  // A fresh name for a temporary file in work/.
  std::string TempName();

 private:
  Status Prepare(const std::vector<std::string>& layers, bool create);

  std::string path_;
  UniqueFd root_;
  UniqueFd upper_;
  UniqueFd work_;
  UniqueFd lock_;
  bool xattrs_ = false;
  bool fresh_ = false;
  bool ephemeral_ = false;
  uint64_t temp_counter_ = 0;
};

// Removes everything below the directory `dirfd` (not the directory itself).
Status RemoveContents(int dirfd, std::string_view name_for_errors);

}  // namespace layerfs

#endif  // LAYERFS_SCRATCH_SCRATCH_DIR_H_
