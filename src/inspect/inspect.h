// Looking inside an image's layers without mounting it: what each layer holds and how much of it
// later layers hide, which layers have a path, and what one layer changes relative to those below.
//
// Pure functions over the layer indexes and merged trees (tree/merged_tree.h); they return structs
// and print nothing. `layerfs inspect`, `which`, `ls` and `diff` (cli/inspect_command.cc) format
// them as tables or JSON.
//
// Layers are named here by their position, 0 for the bottom layer; the command line numbers them
// from 1.
#ifndef LAYERFS_INSPECT_INSPECT_H_
#define LAYERFS_INSPECT_INSPECT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "index/layer_store.h"
#include "layerfs/status.h"
#include "oci/manifest.h"
#include "tree/merged_tree.h"

namespace layerfs {

// What one layer's index holds, and how much of it the merged view of the whole image shows.
struct LayerStats {
  uint64_t tar_entries = 0;    // headers in the tar (whiteouts and duplicates included)
  uint64_t files = 0;          // regular files
  uint64_t dirs = 0;           // directories the tar lists (the root included if listed)
  uint64_t implied_dirs = 0;   // directories the tar does not list, implied by deeper paths
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;      // names that are hard links to a file of this or a lower layer
  uint64_t other = 0;          // devices, FIFOs, sockets
  uint64_t whiteouts = 0;      // `.wh.NAME` entries (a whiteout of a name the layer re-creates
                               // shows as an opaque directory or a plain replacement instead)
  uint64_t opaque_dirs = 0;
  uint64_t dropped = 0;        // entries replaced by a later entry of the same path in this tar
  uint64_t file_bytes = 0;     // sum of the regular files' sizes
  // Regular files of this layer whose data no name in the merged view reaches: shadowed by a
  // later layer's entry of the same path, deleted by a later whiteout, under a later opaque or
  // deleted directory. A file with several hard-linked names counts once, and not at all while
  // any of its names shows. Sizes are logical sizes (st_size), holes of sparse files included.
  uint64_t wasted_files = 0;
  uint64_t wasted_bytes = 0;
};

// Statistics of every layer of `tree` (built over all layers), bottom first.
std::vector<LayerStats> LayerStatistics(const MergedTree& tree);

// How one layer takes part in what the merged view shows at a path.
enum class PathRole {
  kServes,    // its entry is what the merged view shows at the path (a directory: the highest)
  kMerged,    // a directory at the path whose children still show through the one above
  kShadowed,  // its entry at the path is hidden by a higher layer (`by`)
  kWhiteout,  // it deletes the path from the layers below: a whiteout of the path or of an
              // ancestor (`via`)
  kOpaque,    // an opaque directory at an ancestor (`via`) hides the path of the layers below
  kReplaced,  // a non-directory at an ancestor (`via`) hides the path of the layers below
};
std::string_view PathRoleName(PathRole role);

inline constexpr uint32_t kNoLayer = 0xffffffffu;

struct PathLayer {
  uint32_t layer = 0;
  PathRole role = PathRole::kServes;
  uint32_t entry = kNoEntry;  // the layer's entry at the path (kServes, kMerged, kShadowed)
  uint32_t by = kNoLayer;     // kShadowed: the layer whose entry, whiteout or cut hides it
  std::string via;            // kWhiteout, kOpaque, kReplaced: the path ("/a/b") that does it
};

struct PathReport {
  std::string path;                      // normalised, with a leading '/'
  uint32_t node = MergedTree::kNoNode;   // in the merged view; kNoNode: it does not show
  // The layers that have the path or hide it from those below, top layer first. Layers that
  // would hide it but have nothing below to hide are left out, except for whiteouts of the path
  // itself.
  std::vector<PathLayer> layers;
};

// Which layers of `tree` (built over all layers) have `path` and what each does with it. An
// error only for a path that leaves the root ("../x").
Result<PathReport> WhichLayers(const MergedTree& tree, std::string_view path);

// The visible children of directory node `dir`, sorted bytewise by name.
std::vector<uint32_t> SortedChildren(const MergedTree& tree, uint32_t dir);

// What a change to a path touches (DiffItem::changes).
enum DiffChange : uint32_t {
  kChangeType = 1,
  kChangeMode = 2,     // permission bits
  kChangeOwner = 4,    // uid or gid
  kChangeSize = 8,     // regular files and symlinks
  kChangeContent = 16, // see DiffItem
  kChangeMtime = 32,
  kChangeXattrs = 64,
};
// The names of the bits set in `changes`, in bit order ("type", "mode", ...).
std::vector<std::string_view> DiffChangeNames(uint32_t changes);

struct DiffItem {
  enum class Kind { kAdded, kChanged, kDeleted };
  Kind kind = Kind::kAdded;
  std::string path;  // "/a/b"
  // kAdded, kChanged: the node in the view of the layers up to this one. kDeleted: none.
  uint32_t node = MergedTree::kNoNode;
  // kChanged, kDeleted: the node in the view of the layers below.
  uint32_t lower_node = MergedTree::kNoNode;
  // kChanged: DiffChange bits. Content means, for a regular file, that the size differs or the
  // data is stored anew (this layer's copy; the bytes are not compared, and a file re-added with
  // the same bytes counts as changed); for a symlink, the target; for a device, its number.
  uint32_t changes = 0;
  // kDeleted: by an opaque directory at `path` (which itself stays) rather than a whiteout.
  bool opaque = false;
  // Lower paths that no longer show because of this item, `path` itself included for a whiteout
  // (kDeleted), or everything under a directory a non-directory replaced (kChanged).
  uint64_t hidden = 0;
};

struct LayerDiff {
  uint32_t layer = 0;
  std::vector<DiffItem> items;  // in tree order: a directory before what is in it
  uint64_t added = 0;
  uint64_t changed = 0;
  uint64_t deleted = 0;
  uint64_t hidden = 0;          // sum of the items' `hidden`
  uint64_t inert_whiteouts = 0; // whiteouts of paths the layers below do not have
};

// What layer `position` adds, changes and deletes relative to the merged view of the layers
// below it. `lower` and `upto` receive the views of layers [0, position) and [0, position]
// (the nodes in the items refer to them); `lower` stays empty for the bottom layer.
// REQUIRES: position < layers.size()
Result<LayerDiff> DiffLayer(const std::vector<Layer>& layers, uint32_t position,
                            MergedTree* lower, MergedTree* upto);

// The layer position that `arg` names: a number from 1 (the bottom layer) to the layer count, or
// a prefix ("sha256:" optional, at least 4 hex digits) of a layer's blob digest or diff_id.
Result<uint32_t> ParseLayerArg(std::string_view arg, const std::vector<LayerSpec>& specs);

// A one-word name of an index entry type: "file", "dir", "symlink", "hardlink", "char",
// "block", "fifo", "socket", "whiteout".
std::string_view EntryTypeName(EntryType type);
// The same for the type bits of a st_mode.
std::string_view ModeTypeName(uint32_t st_mode);

}  // namespace layerfs

#endif  // LAYERFS_INSPECT_INSPECT_H_
