#include "tree/merged_tree.h"

#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "base/hash.h"
#include "base/path.h"
#include "tree/layer_stack.h"

namespace layerfs {
namespace {

mode_t TypeBits(EntryType t) {
  switch (t) {
    case EntryType::kRegular: return S_IFREG;
    case EntryType::kDirectory: return S_IFDIR;
    case EntryType::kSymlink: return S_IFLNK;
    case EntryType::kCharDevice: return S_IFCHR;
    case EntryType::kBlockDevice: return S_IFBLK;
    case EntryType::kFifo: return S_IFIFO;
    case EntryType::kSocket: return S_IFSOCK;
    default: return S_IFREG;
  }
}

uint64_t PairKey(uint32_t layer, uint32_t entry) { return uint64_t{layer} << 32 | entry; }

}  // namespace

bool MergedTree::Matches(uint32_t id, uint32_t dir, uint32_t hash, std::string_view name) const {
  const Node& n = nodes_[id];
  return n.parent == dir && n.name_hash == hash && n.name_len == name.size() && id != kRoot &&
         std::memcmp((*layers_)[n.layer].index.strings() + n.name_off, name.data(), name.size()) ==
             0;
}

uint32_t MergedTree::Find(uint32_t dir, uint32_t hash, std::string_view name) const {
  return table_.Find(ChildKey(dir, hash),
                     [&](uint32_t id) { return Matches(id, dir, hash, name); });
}

uint32_t MergedTree::AddNode(uint32_t parent, const IndexEntry& e, uint16_t layer,
                             uint32_t entry, uint8_t flags) {
  uint32_t id = static_cast<uint32_t>(nodes_.size());
  nodes_.push_back(Node{parent, e.name_hash, entry, e.name_off, layer, flags,
                        static_cast<uint8_t>(e.name_len), 0});
  table_.Insert(ChildKey(parent, e.name_hash), id);
  return id;
}

Result<MergedTree> MergedTree::Build(const std::vector<Layer>& layers, size_t count) {
  if (count > layers.size()) return Status::Invalid("more layers asked for than the image has");
  if (count > kMaxLayers) return Status::Invalid("more than " + std::to_string(kMaxLayers) + " layers");
  MergedTree tree;
  tree.layers_ = &layers;
  // Sized for the largest layer; directories that every layer repeats would inflate a sum.
  size_t largest = 0;
  for (size_t l = 0; l < count; ++l) {
    largest = std::max<size_t>(largest, layers[l].index.entry_count());
  }
  tree.nodes_.reserve(largest);
  tree.table_.Reserve(largest);

  const uint16_t top = static_cast<uint16_t>(count == 0 ? 0 : count - 1);
  tree.nodes_.push_back(Node{0, 0, kRootEntry, 0, top, kNodeDir, 0, 0});
  // Where lower layers stop contributing to node n, by layer position (-1: nowhere):
  //  - sealed: an opaque directory at that layer; lower layers add no children to n;
  //  - masked: a whiteout of n's name at that layer; lower layers add nothing to n at all (a
  //    directory deleted and re-created above it starts empty, with its own metadata).
  struct Cut {
    int32_t sealed = -1;
    int32_t masked = -1;
  };
  std::vector<Cut> cuts(1);
  std::vector<uint32_t> map;  // entry of the current layer -> node (kNoNode: hidden)
  std::vector<std::pair<uint32_t, uint32_t>> links;  // (node, layer) of hard-link nodes

  for (size_t l = count; l-- > 0;) {
    const LayerIndex& ix = layers[l].index;
    const uint16_t layer = static_cast<uint16_t>(l);
    if (cuts[kRoot].sealed > static_cast<int32_t>(l)) break;  // an opaque root hides all below
    map.assign(ix.entry_count(), kNoNode);
    map[kRootEntry] = kRoot;
    const IndexEntry& root = ix.entry(kRootEntry);
    Node& rn = tree.nodes_[kRoot];
    if (rn.layer != layer && (tree.layer(rn.layer).index.entry(rn.entry).flags & kFlagImplied) &&
        !(root.flags & kFlagImplied)) {
      rn.layer = layer;
      rn.entry = kRootEntry;
    }
    if (root.flags & kFlagOpaque) cuts[kRoot].sealed = std::max<int32_t>(cuts[kRoot].sealed, layer);

    for (uint32_t i = 1; i < ix.entry_count(); ++i) {
      const IndexEntry& e = ix.entry(i);
      const uint32_t parent = map[e.parent];
      if (parent == kNoNode) continue;
      if (cuts[parent].sealed > static_cast<int32_t>(l)) continue;
      const auto type = static_cast<EntryType>(e.type);
      const std::string_view name = ix.name(e);
      const uint32_t existing = tree.Find(parent, e.name_hash, name);
      if (type == EntryType::kWhiteout) {
        if (existing == kNoNode) {
          tree.AddNode(parent, e, layer, i, kNodeTombstone);
          cuts.emplace_back();
        } else {
          // A higher layer re-created the name: the whiteout still deletes everything below.
          cuts[existing].masked = std::max<int32_t>(cuts[existing].masked, layer);
        }
        continue;
      }
      const bool is_dir = type == EntryType::kDirectory;
      if (existing == kNoNode) {
        uint32_t id = tree.AddNode(parent, e, layer, i, is_dir ? kNodeDir : 0);
        cuts.push_back({is_dir && (e.flags & kFlagOpaque) ? static_cast<int32_t>(l) : -1, -1});
        if (is_dir) map[i] = id;
        if (type == EntryType::kHardlink) links.emplace_back(id, layer);
        continue;
      }
      Node& n = tree.nodes_[existing];
      if (!(n.flags & kNodeDir)) continue;  // a higher non-directory hides this entry
      if (cuts[existing].masked > static_cast<int32_t>(l)) continue;  // deleted above
      if (!is_dir) {
        // A non-directory here deleted whatever lower layers have at this path, as a whiteout
        // would; the directory above was re-created over it.
        cuts[existing].masked = std::max<int32_t>(cuts[existing].masked, layer);
        continue;
      }
      map[i] = existing;
      // Directories merge. The metadata is the highest layer's that really has the directory.
      if ((tree.layer(n.layer).index.entry(n.entry).flags & kFlagImplied) &&
          !(e.flags & kFlagImplied)) {
        n.layer = layer;
        n.entry = i;
        n.name_off = e.name_off;  // the name's bytes are the same, in this layer's strings
      }
      if (e.flags & kFlagOpaque) {
        cuts[existing].sealed = std::max<int32_t>(cuts[existing].sealed, layer);
      }
    }
  }
  tree.ResolveHardLinks(links);
  tree.BuildChildren();
  tree.nodes_.shrink_to_fit();
  tree.table_.Compact();
  return tree;
}

void MergedTree::ResolveHardLinks(const std::vector<std::pair<uint32_t, uint32_t>>& pending) {
  if (pending.empty()) return;
  // The defining (layer, entry) of every hard-link node.
  std::unordered_map<uint64_t, std::vector<uint32_t>> groups;
  for (auto [node, layer] : pending) {
    const LayerIndex& ix = layers_->at(layer).index;
    const IndexEntry& e = ix.entry(nodes_[node].entry);
    uint32_t def_layer = layer;
    uint32_t def_entry = static_cast<uint32_t>(e.data);
    if (e.flags & kFlagLowerLink) {
      StackHit hit = StackLookup(*layers_, layer, ix.link_target(e));
      const bool ok = hit.found() && static_cast<EntryType>(layers_->at(hit.layer).index
                                                                .entry(hit.entry).type) !=
                                         EntryType::kDirectory;
      if (!ok) {
        nodes_[node].flags |= kNodeHidden;
        if (warnings_.size() < 100) {
          warnings_.push_back(layers_->at(layer).label + ": hard link \"" +
                              Printable(ix.PathOf(nodes_[node].entry)) + "\" to \"" +
                              Printable(ix.link_target(e)) +
                              "\": the target is not in the layers below; not shown");
        }
        continue;
      }
      def_layer = hit.layer;
      def_entry = hit.entry;
    }
    groups[PairKey(def_layer, def_entry)].push_back(node);
  }
  // The target's own name, where it is still visible, belongs to the same inode.
  for (uint32_t n = 0; n < nodes_.size(); ++n) {
    const Node& node = nodes_[n];
    if (node.flags & (kNodeTombstone | kNodeDir | kNodeHidden)) continue;
    auto it = groups.find(PairKey(node.layer, node.entry));
    if (it != groups.end()) it->second.push_back(n);
  }
  for (auto& [key, members] : groups) {
    std::sort(members.begin(), members.end());
    members.erase(std::unique(members.begin(), members.end()), members.end());
    uint32_t link_index = static_cast<uint32_t>(links_.size());
    links_.push_back(Link{members.front(), static_cast<uint32_t>(members.size()),
                          static_cast<uint32_t>(key & 0xffffffffu),
                          static_cast<uint32_t>(key >> 32)});
    for (uint32_t m : members) {
      nodes_[m].flags |= kNodeLinked;
      nodes_[m].extra = link_index;
    }
  }
}

void MergedTree::BuildChildren() {
  const uint32_t n = node_count();
  dirs_.clear();
  for (uint32_t i = 0; i < n; ++i) {
    if (nodes_[i].flags & kNodeDir) {
      nodes_[i].extra = static_cast<uint32_t>(dirs_.size());
      dirs_.push_back(Dir{0, 0, 2});
    }
  }
  visible_ = 1;
  for (uint32_t i = 1; i < n; ++i) {
    if (nodes_[i].flags & (kNodeTombstone | kNodeHidden)) continue;
    Dir& parent = dirs_[nodes_[nodes_[i].parent].extra];
    ++parent.child_count;
    if (nodes_[i].flags & kNodeDir) ++parent.nlink;
    ++visible_;
  }
  uint32_t start = 0;
  for (Dir& d : dirs_) {
    d.first_child = start;
    start += d.child_count;
    d.child_count = 0;
  }
  children_.assign(start, 0);
  for (uint32_t i = 1; i < n; ++i) {
    if (nodes_[i].flags & (kNodeTombstone | kNodeHidden)) continue;
    Dir& parent = dirs_[nodes_[nodes_[i].parent].extra];
    children_[parent.first_child + parent.child_count++] = i;
  }
}

uint32_t MergedTree::Lookup(uint32_t dir, std::string_view name) const {
  if (!IsDir(dir)) return kNoNode;
  uint32_t id = Find(dir, NameHash(name), name);
  if (id == kNoNode || (nodes_[id].flags & (kNodeTombstone | kNodeHidden))) return kNoNode;
  return id;
}

uint32_t MergedTree::LookupPath(std::string_view path) const {
  uint32_t id = kRoot;
  for (std::string_view part : SplitPath(path)) {
    id = Lookup(id, part);
    if (id == kNoNode) return kNoNode;
  }
  return id;
}

std::string_view MergedTree::Name(uint32_t n) const {
  const Node& node = nodes_[n];
  return std::string_view((*layers_)[node.layer].index.strings() + node.name_off, node.name_len);
}

std::string MergedTree::PathOf(uint32_t n) const {
  std::vector<std::string_view> parts;
  while (n != kRoot) {
    parts.push_back(Name(n));
    n = nodes_[n].parent;
  }
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    path += '/';
    path += *it;
  }
  return path.empty() ? "/" : path;
}

uint32_t MergedTree::InodeOf(uint32_t n) const {
  const Node& node = nodes_[n];
  return (node.flags & kNodeLinked) ? links_[node.extra].inode : n;
}

uint32_t MergedTree::LayerOf(uint32_t n) const {
  const Node& node = nodes_[n];
  return (node.flags & kNodeLinked) ? links_[node.extra].layer : node.layer;
}

const IndexEntry& MergedTree::EntryOf(uint32_t n) const {
  const Node& node = nodes_[n];
  if (node.flags & kNodeLinked) {
    const Link& link = links_[node.extra];
    return (*layers_)[link.layer].index.entry(link.entry);
  }
  return (*layers_)[node.layer].index.entry(node.entry);
}

uint32_t MergedTree::EntryIndexOf(uint32_t n) const {
  const Node& node = nodes_[n];
  return (node.flags & kNodeLinked) ? links_[node.extra].entry : node.entry;
}

uint32_t MergedTree::Nlink(uint32_t n) const {
  const Node& node = nodes_[n];
  if (node.flags & kNodeDir) return dirs_[node.extra].nlink;
  if (node.flags & kNodeLinked) return links_[node.extra].nlink;
  return 1;
}

bool MergedTree::Xattr(uint32_t n, std::string_view name, std::string* value) const {
  const IndexEntry& e = EntryOf(n);
  const LayerIndex& ix = layer(LayerOf(n)).index;
  for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
    if (ix.xattr_name(e, k) == name) {
      *value = ix.xattr_value(e, k);
      return true;
    }
  }
  return false;
}

void MergedTree::XattrNames(uint32_t n, std::string* names) const {
  const IndexEntry& e = EntryOf(n);
  const LayerIndex& ix = layer(LayerOf(n)).index;
  for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
    *names += ix.xattr_name(e, k);
    *names += '\0';
  }
}

std::string_view MergedTree::LinkTarget(uint32_t n) const {
  const LayerIndex& ix = (*layers_)[LayerOf(n)].index;
  return ix.link_target(EntryOf(n));
}

void MergedTree::Stat(uint32_t n, struct stat* st) const {
  const IndexEntry& e = EntryOf(n);
  const auto type = static_cast<EntryType>(e.type);
  *st = {};
  st->st_ino = InodeOf(n) + 1;
  // Symlink permissions mean nothing on Linux and always show as 0777, whatever the tar says.
  st->st_mode = TypeBits(type) | (type == EntryType::kSymlink ? 0777 : (e.mode & 07777));
  st->st_nlink = Nlink(n);
  st->st_uid = e.uid;
  st->st_gid = e.gid;
  st->st_blksize = 4096;
  switch (type) {
    case EntryType::kRegular: {
      st->st_size = static_cast<off_t>(e.size);
      uint64_t stored = e.size;
      if (e.flags & kFlagSparse) {
        const LayerIndex& ix = (*layers_)[LayerOf(n)].index;
        stored = 0;
        for (uint64_t k = 0; k < ix.sparse_run_count(e); ++k) stored += ix.sparse_run(e, k).length;
      }
      st->st_blocks = static_cast<blkcnt_t>((stored + 511) / 512);
      break;
    }
    case EntryType::kSymlink:
      st->st_size = static_cast<off_t>(e.size);
      break;
    case EntryType::kDirectory:
      st->st_size = 4096;
      st->st_blocks = 8;
      break;
    case EntryType::kCharDevice:
    case EntryType::kBlockDevice:
      st->st_rdev = static_cast<dev_t>(e.data);
      break;
    default:
      break;
  }
  st->st_mtim.tv_sec = static_cast<time_t>(e.mtime_sec);
  st->st_mtim.tv_nsec = e.mtime_nsec;
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
}

size_t MergedTree::memory_bytes() const {
  return nodes_.capacity() * sizeof(Node) + dirs_.capacity() * sizeof(Dir) +
         children_.capacity() * sizeof(uint32_t) + links_.capacity() * sizeof(Link) +
         table_.memory_bytes();
}

}  // namespace layerfs
