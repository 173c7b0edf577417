// MergedTree: the union of an image's layers as one tree, built once at mount.
//
// Every visible path of the image is one node; a lookup of (directory, name) is one probe of one
// hash table, whatever the number of layers. Node numbers are dense, fixed for the life of the
// tree and reproducible for the same image, and they are what FUSE inode numbers derive from
// (ino = node + 1, so the root, node 0, is FUSE_ROOT_ID). The names of hard links to one file
// share the inode of the lowest-numbered of those nodes.
//
// A node refers to the index entry that gives it its name and, for the metadata and data, the
// entry that defines it (the same entry, except for hard links and directories whose highest
// entry was only implied). Entries live in the mapped layer indexes, so a node costs 24 bytes
// plus its share of the hash table and the child lists.
//
// The rules (OCI image-spec layer.md, as containerd and umoci apply them):
//  - `.wh.NAME` in a layer hides NAME in lower layers; an opaque directory hides everything lower
//    layers have inside it; whiteouts themselves never show;
//  - a non-directory hides whatever lower layers have at its path, subtree included; a directory
//    over a non-directory replaces it; directories over directories merge, and the highest
//    layer's metadata wins (unless that layer only implied the directory);
//  - hard links are one inode with the right st_nlink, also when the target is in a lower layer.
//
// Immutable after Build(): all methods are safe to call from any thread without locks.
#ifndef LAYERFS_TREE_MERGED_TREE_H_
#define LAYERFS_TREE_MERGED_TREE_H_

#include <sys/stat.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/child_table.h"
#include "index/layer_store.h"

namespace layerfs {

class MergedTree {
 public:
  static constexpr uint32_t kNoNode = 0xffffffffu;
  static constexpr uint32_t kRoot = 0;

  MergedTree() = default;
  MergedTree(MergedTree&&) noexcept = default;
  MergedTree& operator=(MergedTree&&) noexcept = default;

  // Builds the union of `layers` (bottom layer first). `layers` must outlive the tree.
  static Result<MergedTree> Build(const std::vector<Layer>& layers) {
    return Build(layers, layers.size());
  }
  // Builds the union of the bottom `count` layers, layers[0, count): the image as it was before
  // the layers above were added (`layerfs diff`). Node layers are positions in `layers`.
  // REQUIRES: 1 <= count <= layers.size()
  static Result<MergedTree> Build(const std::vector<Layer>& layers, size_t count);

  uint32_t node_count() const { return static_cast<uint32_t>(nodes_.size()); }
  // Nodes the mount shows, the root included (its inode count).
  size_t visible_count() const { return visible_; }
  // Paths the mount shows below its root, as `layerfs inspect` and `mount -v` count them.
  size_t visible_paths() const { return visible_ - 1; }

  // The child `name` of directory `dir`, or kNoNode.
  uint32_t Lookup(uint32_t dir, std::string_view name) const;
  // The node at a normalised path ("" is the root), or kNoNode.
  uint32_t LookupPath(std::string_view path) const;

  bool IsDir(uint32_t n) const { return nodes_[n].flags & kNodeDir; }
  uint32_t Parent(uint32_t n) const { return nodes_[n].parent; }
  std::string_view Name(uint32_t n) const;
  std::string PathOf(uint32_t n) const;
  // The visible children of a directory, in a fixed order.
  std::span<const uint32_t> Children(uint32_t dir) const {
    if (!IsDir(dir)) return {};
    const Dir& d = dirs_[nodes_[dir].extra];
    return {children_.data() + d.first_child, d.child_count};
  }

  // The node whose number is the inode of `n` (differs from n for hard links).
  uint32_t InodeOf(uint32_t n) const;
  // The layer and entry that define n's metadata and content.
  uint32_t LayerOf(uint32_t n) const;
  const IndexEntry& EntryOf(uint32_t n) const;
  // The index of EntryOf(n) in layer LayerOf(n): with it, the pair names n's content.
  uint32_t EntryIndexOf(uint32_t n) const;
  const Layer& layer(uint32_t position) const { return (*layers_)[position]; }
  const std::vector<Layer>& layers() const { return *layers_; }
  uint32_t Nlink(uint32_t n) const;

  // Fills `st` for node n (st_ino is InodeOf(n) + 1).
  void Stat(uint32_t n, struct stat* st) const;
  // Symlink target of a symlink node.
  std::string_view LinkTarget(uint32_t n) const;
  // The value of node n's xattr `name`, if it has one.
  bool Xattr(uint32_t n, std::string_view name, std::string* value) const;
  // Node n's xattr names, each followed by a NUL, appended to `names`.
  void XattrNames(uint32_t n, std::string* names) const;

  // Bytes of memory the tree itself holds (not counting the mapped indexes).
  size_t memory_bytes() const;
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  enum NodeFlags : uint8_t {
    kNodeDir = 1,
    kNodeTombstone = 2,  // a whiteout: hides lower entries during the build, never visible
    kNodeLinked = 4,     // one of several names of one inode: see links_
    kNodeHidden = 8,     // a hard link whose target does not exist: never visible
  };

  // A node keeps its name's place (layer, offset, length) so that a lookup compares names without
  // touching the index entry: slot, node, name bytes.
  struct Node {
    uint32_t parent;
    uint32_t name_hash;
    uint32_t entry;     // entry in `layer` that names this node (and defines it, unless kNodeLinked)
    uint32_t name_off;  // the name in `layer`'s string area
    uint16_t layer;
    uint8_t flags;
    uint8_t name_len;
    uint32_t extra;     // directories: index in dirs_; kNodeLinked: index in links_
  };
  static_assert(sizeof(Node) == 24);

  struct Dir {
    uint32_t first_child;  // start in children_
    uint32_t child_count;  // visible children
    uint32_t nlink;        // 2 + subdirectories
  };

  struct Link {
    uint32_t inode;  // the node whose number is the shared inode
    uint32_t nlink;
    uint32_t entry;  // the defining entry
    uint32_t layer;
  };

  bool Matches(uint32_t id, uint32_t dir, uint32_t hash, std::string_view name) const;
  uint32_t Find(uint32_t dir, uint32_t hash, std::string_view name) const;
  uint32_t AddNode(uint32_t parent, const IndexEntry& e, uint16_t layer, uint32_t entry,
                   uint8_t flags);
  void ResolveHardLinks(const std::vector<std::pair<uint32_t, uint32_t>>& pending);
  void BuildChildren();

  const std::vector<Layer>* layers_ = nullptr;
  std::vector<Node> nodes_;
  std::vector<Dir> dirs_;
  std::vector<uint32_t> children_;
  std::vector<Link> links_;
  ChildTable table_;
  size_t visible_ = 0;
  std::vector<std::string> warnings_;
};

}  // namespace layerfs

#endif  // LAYERFS_TREE_MERGED_TREE_H_
