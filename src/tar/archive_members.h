// The members of an uncompressed tar archive that holds an image (`docker save` writes one), with
// where each member's bytes are, so that layer tars inside it are read in place.
#ifndef LAYERFS_TAR_ARCHIVE_MEMBERS_H_
#define LAYERFS_TAR_ARCHIVE_MEMBERS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "layerfs/status.h"

namespace layerfs {

struct ArchiveMember {
  enum class Kind { kFile, kDirectory, kSymlink, kHardlink, kOther };
  std::string path;  // normalised
  Kind kind;
  uint64_t offset;   // kFile: offset of the data in the archive
  uint64_t size;     // kFile: length of the data
  std::string link;  // kSymlink: target as stored; kHardlink: normalised target path
};

// Reads only the headers of the archive in `fd` (seeking over member data). `name` names the
// archive in errors. A compressed archive is refused: its members cannot be read in place.
Result<std::vector<ArchiveMember>> ListArchiveMembers(int fd, const std::string& name);

}  // namespace layerfs

#endif  // LAYERFS_TAR_ARCHIVE_MEMBERS_H_
