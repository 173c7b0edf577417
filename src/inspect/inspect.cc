#include "inspect/inspect.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

#include "base/path.h"

namespace layerfs {
namespace {

// Descendants of directory node `n` (n itself not counted).
uint64_t SubtreeSize(const MergedTree& tree, uint32_t n) {
  uint64_t count = 0;
  std::vector<uint32_t> stack = {n};
  while (!stack.empty()) {
    uint32_t d = stack.back();
    stack.pop_back();
    for (uint32_t c : tree.Children(d)) {
      ++count;
      if (tree.IsDir(c)) stack.push_back(c);
    }
  }
  return count;
}

// Descendants of `lower`'s directory node `ln` that do not show below `upto`'s node `un` (the
// same path in a view with more layers; kNoNode or a non-directory: nothing shows).
uint64_t CountHidden(const MergedTree& lower, uint32_t ln, const MergedTree& upto, uint32_t un) {
  uint64_t count = 0;
  std::vector<std::pair<uint32_t, uint32_t>> stack = {{ln, un}};
  while (!stack.empty()) {
    auto [l, u] = stack.back();
    stack.pop_back();
    for (uint32_t c : lower.Children(l)) {
      uint32_t uc = u == MergedTree::kNoNode ? MergedTree::kNoNode : upto.Lookup(u, lower.Name(c));
      if (uc == MergedTree::kNoNode) {
        count += 1 + (lower.IsDir(c) ? SubtreeSize(lower, c) : 0);
      } else if (lower.IsDir(c)) {
        stack.emplace_back(c, uc);
      }
    }
  }
  return count;
}

std::vector<std::pair<std::string_view, std::string_view>> Xattrs(const MergedTree& tree,
                                                                   uint32_t n) {
  const LayerIndex& ix = tree.layer(tree.LayerOf(n)).index;
  const IndexEntry& e = tree.EntryOf(n);
  std::vector<std::pair<std::string_view, std::string_view>> out;
  for (uint16_t k = 0; k < ix.xattr_count(e); ++k) {
    out.emplace_back(ix.xattr_name(e, k), ix.xattr_value(e, k));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// What differs between node `ln` of `lower` and node `un` of `upto` (the same path). With
// `metadata` false (a directory the layer only implies) only the type counts.
uint32_t Compare(const MergedTree& lower, uint32_t ln, const MergedTree& upto, uint32_t un,
                 bool metadata) {
  struct stat a;
  struct stat b;
  lower.Stat(ln, &a);
  upto.Stat(un, &b);
  if ((a.st_mode & S_IFMT) != (b.st_mode & S_IFMT)) return kChangeType;
  if (!metadata) return 0;
  uint32_t changes = 0;
  if ((a.st_mode & 07777) != (b.st_mode & 07777)) changes |= kChangeMode;
  if (a.st_uid != b.st_uid || a.st_gid != b.st_gid) changes |= kChangeOwner;
  if (a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec) {
    changes |= kChangeMtime;
  }
  switch (a.st_mode & S_IFMT) {
    case S_IFREG:
      if (a.st_size != b.st_size) changes |= kChangeSize | kChangeContent;
      if (lower.LayerOf(ln) != upto.LayerOf(un) ||
          lower.EntryIndexOf(ln) != upto.EntryIndexOf(un)) {
        changes |= kChangeContent;
      }
      break;
    case S_IFLNK:
      if (a.st_size != b.st_size) changes |= kChangeSize;
      if (lower.LinkTarget(ln) != upto.LinkTarget(un)) changes |= kChangeContent;
      break;
    case S_IFCHR:
    case S_IFBLK:
      if (a.st_rdev != b.st_rdev) changes |= kChangeContent;
      break;
    default:
      break;
  }
  if (Xattrs(lower, ln) != Xattrs(upto, un)) changes |= kChangeXattrs;
  return changes;
}

// What one layer has at a path, found by walking the path's components in that layer alone.
struct LayerAtPath {
  enum class Kind {
    kAbsent,            // nothing at the path, nothing that hides it
    kEntry,             // an entry at the path (`entry`)
    kWhiteout,          // a whiteout of the path
    kAncestorWhiteout,  // a whiteout of the ancestor with `depth` components
    kAncestorNonDir,    // a non-directory at that ancestor
    kOpaqueAncestor,    // no entry, but that ancestor is an opaque directory in this layer
  };
  Kind kind = Kind::kAbsent;
  uint32_t entry = kNoEntry;
  size_t depth = 0;
  // kEntry: an ancestor is an opaque directory in this layer (at `depth`), so the layers below
  // add nothing at the path.
  bool opaque_ancestor = false;
};

LayerAtPath LookAt(const LayerIndex& ix, const std::vector<std::string_view>& parts) {
  LayerAtPath at;
  uint32_t cur = kRootEntry;
  bool opaque = (ix.entry(cur).flags & kFlagOpaque) != 0;
  size_t opaque_depth = 0;
  if (parts.empty()) {
    at.kind = LayerAtPath::Kind::kEntry;
    at.entry = kRootEntry;
    return at;
  }
  for (size_t k = 0; k < parts.size(); ++k) {
    uint32_t child = ix.FindChild(cur, parts[k]);
    if (child == kNoEntry) {
      if (opaque) {
        at.kind = LayerAtPath::Kind::kOpaqueAncestor;
        at.depth = opaque_depth;
      }
      return at;
    }
    const IndexEntry& e = ix.entry(child);
    const auto type = static_cast<EntryType>(e.type);
    if (k + 1 == parts.size()) {
      if (type == EntryType::kWhiteout) {
        at.kind = LayerAtPath::Kind::kWhiteout;
        at.depth = parts.size();
      } else {
        at.kind = LayerAtPath::Kind::kEntry;
        at.entry = child;
        at.opaque_ancestor = opaque;
        at.depth = opaque_depth;
      }
      return at;
    }
    if (type == EntryType::kWhiteout) {
      at.kind = LayerAtPath::Kind::kAncestorWhiteout;
      at.depth = k + 1;
      return at;
    }
    if (type != EntryType::kDirectory) {
      at.kind = LayerAtPath::Kind::kAncestorNonDir;
      at.depth = k + 1;
      return at;
    }
    if (e.flags & kFlagOpaque) {
      opaque = true;
      opaque_depth = k + 1;
    }
    cur = child;
  }
  return at;
}

std::string JoinPath(const std::vector<std::string_view>& parts, size_t depth) {
  std::string out;
  for (size_t k = 0; k < depth; ++k) {
    out += '/';
    out += parts[k];
  }
  return out.empty() ? "/" : out;
}

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::vector<LayerStats> LayerStatistics(const MergedTree& tree) {
  const std::vector<Layer>& layers = tree.layers();
  // The regular-file entries whose data some visible name reaches, per layer.
  std::vector<std::vector<char>> reached(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) reached[l].assign(layers[l].index.entry_count(), 0);
  std::vector<uint32_t> stack = {MergedTree::kRoot};
  while (!stack.empty()) {
    uint32_t d = stack.back();
    stack.pop_back();
    for (uint32_t c : tree.Children(d)) {
      if (tree.IsDir(c)) {
        stack.push_back(c);
      } else if (static_cast<EntryType>(tree.EntryOf(c).type) == EntryType::kRegular) {
        reached[tree.LayerOf(c)][tree.EntryIndexOf(c)] = 1;
      }
    }
  }

  std::vector<LayerStats> out(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerIndex& ix = layers[l].index;
    LayerStats& s = out[l];
    s.tar_entries = ix.header().tar_entries;
    s.dropped = ix.header().dropped_entries;
    for (uint32_t i = 0; i < ix.entry_count(); ++i) {
      const IndexEntry& e = ix.entry(i);
      switch (static_cast<EntryType>(e.type)) {
        case EntryType::kRegular:
          ++s.files;
          s.file_bytes += e.size;
          if (!reached[l][i]) {
            ++s.wasted_files;
            s.wasted_bytes += e.size;
          }
          break;
        case EntryType::kDirectory:
          if (e.flags & kFlagImplied) {
            if (i != kRootEntry) ++s.implied_dirs;
          } else {
            ++s.dirs;
          }
          if (e.flags & kFlagOpaque) ++s.opaque_dirs;
          break;
        case EntryType::kSymlink: ++s.symlinks; break;
        case EntryType::kHardlink: ++s.hardlinks; break;
        case EntryType::kWhiteout: ++s.whiteouts; break;
        default: ++s.other; break;
      }
    }
  }
  return out;
}

std::string_view PathRoleName(PathRole role) {
  switch (role) {
    case PathRole::kServes: return "serves";
    case PathRole::kMerged: return "merged";
    case PathRole::kShadowed: return "shadowed";
    case PathRole::kWhiteout: return "whiteout";
    case PathRole::kOpaque: return "opaque";
    case PathRole::kReplaced: return "replaced";
  }
  return "?";
}

Result<PathReport> WhichLayers(const MergedTree& tree, std::string_view path) {
  LAYERFS_ASSIGN_OR_RETURN(std::string normalized, NormalizePath(path));
  PathReport report;
  report.path = "/" + normalized;
  report.node = tree.LookupPath(normalized);
  const std::vector<std::string_view> parts = SplitPath(normalized);
  const std::vector<Layer>& layers = tree.layers();

  // Top down, as the merged tree resolves the path: the first entry serves; directories below a
  // directory merge until something cuts the path off (a non-directory, a whiteout, an opaque
  // directory); from there on the layers below are hidden by the layer that cut (`cut`).
  uint32_t cut = kNoLayer;
  uint32_t serving = kNoLayer;
  // A layer that hides the path through an ancestor: reported only if a lower layer has the path.
  std::optional<PathLayer> pending;
  for (size_t j = layers.size(); j-- > 0;) {
    const uint32_t layer = static_cast<uint32_t>(j);
    const LayerIndex& ix = layers[j].index;
    LayerAtPath at = LookAt(ix, parts);
    switch (at.kind) {
      case LayerAtPath::Kind::kAbsent:
        break;
      case LayerAtPath::Kind::kWhiteout:
        report.layers.push_back({layer, PathRole::kWhiteout, kNoEntry, kNoLayer, report.path});
        if (cut == kNoLayer) cut = layer;
        break;
      case LayerAtPath::Kind::kAncestorWhiteout:
      case LayerAtPath::Kind::kAncestorNonDir:
      case LayerAtPath::Kind::kOpaqueAncestor:
        if (cut == kNoLayer) {
          cut = layer;
          PathRole role = at.kind == LayerAtPath::Kind::kAncestorWhiteout ? PathRole::kWhiteout
                          : at.kind == LayerAtPath::Kind::kAncestorNonDir ? PathRole::kReplaced
                                                                           : PathRole::kOpaque;
          pending = PathLayer{layer, role, kNoEntry, kNoLayer, JoinPath(parts, at.depth)};
        }
        break;
      case LayerAtPath::Kind::kEntry: {
        if (pending) {
          report.layers.push_back(std::move(*pending));
          pending.reset();
        }
        const IndexEntry& e = ix.entry(at.entry);
        const bool is_dir = static_cast<EntryType>(e.type) == EntryType::kDirectory;
        const bool cuts_below = !is_dir || (e.flags & kFlagOpaque) || at.opaque_ancestor;
        if (cut != kNoLayer) {
          report.layers.push_back({layer, PathRole::kShadowed, at.entry, cut, {}});
        } else if (serving == kNoLayer) {
          serving = layer;
          report.layers.push_back({layer, PathRole::kServes, at.entry, kNoLayer, {}});
          if (cuts_below) cut = layer;
        } else if (is_dir) {
          report.layers.push_back({layer, PathRole::kMerged, at.entry, kNoLayer, {}});
          if (cuts_below) cut = layer;
        } else {
          // A non-directory under the directory above: replaced by it, and it deletes whatever
          // the layers below have at the path.
          report.layers.push_back({layer, PathRole::kShadowed, at.entry, serving, {}});
          cut = layer;
        }
        break;
      }
    }
  }
  return report;
}

std::vector<uint32_t> SortedChildren(const MergedTree& tree, uint32_t dir) {
  std::span<const uint32_t> children = tree.Children(dir);
  std::vector<uint32_t> out(children.begin(), children.end());
  std::sort(out.begin(), out.end(),
            [&](uint32_t a, uint32_t b) { return tree.Name(a) < tree.Name(b); });
  return out;
}

std::vector<std::string_view> DiffChangeNames(uint32_t changes) {
  static constexpr std::pair<DiffChange, std::string_view> kNames[] = {
      {kChangeType, "type"},       {kChangeMode, "mode"},   {kChangeOwner, "owner"},
      {kChangeSize, "size"},       {kChangeContent, "content"}, {kChangeMtime, "mtime"},
      {kChangeXattrs, "xattrs"},
  };
  std::vector<std::string_view> out;
  for (const auto& [bit, name] : kNames) {
    if (changes & bit) out.push_back(name);
  }
  return out;
}

Result<LayerDiff> DiffLayer(const std::vector<Layer>& layers, uint32_t position,
                            MergedTree* lower, MergedTree* upto) {
  if (position >= layers.size()) return Status::Invalid("no such layer");
  LAYERFS_ASSIGN_OR_RETURN(*upto, MergedTree::Build(layers, position + 1));
  const bool has_lower = position > 0;
  *lower = MergedTree();
  if (has_lower) {
    LAYERFS_ASSIGN_OR_RETURN(*lower, MergedTree::Build(layers, position));
  }
  auto lower_lookup = [&](std::string_view normalized) {
    return has_lower ? lower->LookupPath(normalized) : MergedTree::kNoNode;
  };

  const LayerIndex& ix = layers[position].index;
  LayerDiff diff;
  diff.layer = position;
  auto add = [&](DiffItem item) {
    switch (item.kind) {
      case DiffItem::Kind::kAdded: ++diff.added; break;
      case DiffItem::Kind::kChanged: ++diff.changed; break;
      case DiffItem::Kind::kDeleted: ++diff.deleted; break;
    }
    diff.hidden += item.hidden;
    diff.items.push_back(std::move(item));
  };

  // Depth first over this layer's entries, children in name order. `in_opaque`: an ancestor is
  // opaque in this layer, whose deletion item already counts what it hides.
  struct Frame {
    uint32_t entry;
    std::string path;  // normalised
    bool in_opaque;
  };
  std::vector<Frame> stack = {{kRootEntry, "", false}};
  while (!stack.empty()) {
    Frame f = std::move(stack.back());
    stack.pop_back();
    const IndexEntry& e = ix.entry(f.entry);
    const auto type = static_cast<EntryType>(e.type);
    const std::string shown = "/" + f.path;
    const uint32_t ln = lower_lookup(f.path);
    if (type == EntryType::kWhiteout) {
      if (ln == MergedTree::kNoNode) {
        ++diff.inert_whiteouts;
      } else if (!f.in_opaque) {
        DiffItem item{DiffItem::Kind::kDeleted, shown};
        item.lower_node = ln;
        item.hidden = 1 + (lower->IsDir(ln) ? SubtreeSize(*lower, ln) : 0);
        add(std::move(item));
      }
      continue;
    }
    const uint32_t un = upto->LookupPath(f.path);
    if (un == MergedTree::kNoNode) continue;  // never shows (a hard link to a missing target)
    const bool implied = (e.flags & kFlagImplied) != 0;
    if (ln == MergedTree::kNoNode) {
      if (f.entry != kRootEntry) {
        DiffItem item{DiffItem::Kind::kAdded, shown};
        item.node = un;
        add(std::move(item));
      }
    } else {
      DiffItem item{DiffItem::Kind::kChanged, shown};
      item.node = un;
      item.lower_node = ln;
      item.changes = Compare(*lower, ln, *upto, un, !implied);
      if (lower->IsDir(ln) && !upto->IsDir(un) && !f.in_opaque) {
        item.hidden = SubtreeSize(*lower, ln);
      }
      if (item.changes != 0) add(std::move(item));
    }
    if (type != EntryType::kDirectory) continue;
    const bool opaque = (e.flags & kFlagOpaque) != 0;
    if (opaque && !f.in_opaque && ln != MergedTree::kNoNode && lower->IsDir(ln)) {
      DiffItem item{DiffItem::Kind::kDeleted, shown};
      item.lower_node = ln;
      item.opaque = true;
      item.hidden = CountHidden(*lower, ln, *upto, un);
      if (item.hidden > 0) add(std::move(item));
    }
    const uint32_t first = ix.first_child(e);
    for (uint32_t k = ix.child_count(e); k-- > 0;) {
      const uint32_t c = first + k;
      std::string child_path = f.path.empty() ? std::string(ix.name(ix.entry(c)))
                                              : f.path + "/" + std::string(ix.name(ix.entry(c)));
      stack.push_back({c, std::move(child_path), f.in_opaque || opaque});
    }
  }
  return diff;
}

Result<uint32_t> ParseLayerArg(std::string_view arg, const std::vector<LayerSpec>& specs) {
  const size_t count = specs.size();
  const std::string range =
      count == 1 ? "the image has 1 layer (number 1)"
                 : "the image has " + std::to_string(count) + " layers, numbered 1 (bottom) to " +
                       std::to_string(count) + " (top)";
  if (!arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
    if (ec != std::errc() || end != arg.data() + arg.size() || n < 1 || n > count) {
      return Status::Invalid("layer " + std::string(arg) + " does not exist: " + range);
    }
    return static_cast<uint32_t>(n - 1);
  }
  std::string_view prefix = arg;
  if (prefix.starts_with("sha256:")) prefix.remove_prefix(7);
  if (prefix.size() < 4 || prefix.size() > 64 || !IsHex(prefix)) {
    return Status::Invalid("layer \"" + Printable(arg) +
                           "\": expected a layer number or a digest prefix of at least 4 hex "
                           "digits; " + range);
  }
  std::vector<uint32_t> found;
  for (size_t i = 0; i < count; ++i) {
    const LayerSpec& s = specs[i];
    if ((s.blob_digest && s.blob_digest->hex().starts_with(prefix)) ||
        (s.diff_id && s.diff_id->hex().starts_with(prefix))) {
      found.push_back(static_cast<uint32_t>(i));
    }
  }
  if (found.empty()) {
    return Status::NotFound("no layer's digest starts with " + std::string(prefix) + "; " +
                            range);
  }
  if (found.size() > 1) {
    std::string which;
    for (uint32_t i : found) which += (which.empty() ? "" : ", ") + std::to_string(i + 1);
    return Status::Invalid("digest prefix " + std::string(prefix) + " names layers " + which +
                           "; give more digits");
  }
  return found[0];
}

std::string_view EntryTypeName(EntryType type) {
  switch (type) {
    case EntryType::kRegular: return "file";
    case EntryType::kDirectory: return "dir";
    case EntryType::kSymlink: return "symlink";
    case EntryType::kHardlink: return "hardlink";
    case EntryType::kCharDevice: return "char";
    case EntryType::kBlockDevice: return "block";
    case EntryType::kFifo: return "fifo";
    case EntryType::kSocket: return "socket";
    case EntryType::kWhiteout: return "whiteout";
  }
  return "?";
}

std::string_view ModeTypeName(uint32_t st_mode) {
  switch (st_mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
  }
  return "?";
}

}  // namespace layerfs
