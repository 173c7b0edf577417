#include "index/index_builder.h"

#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "base/coding.h"
#include "base/hash.h"
#include "base/path.h"
#include "tar/whiteout.h"

namespace layerfs {

struct IndexBuilder::Entry {
  uint32_t parent = 0;
  std::string name;
  uint32_t name_hash = 0;
  EntryType type = EntryType::kDirectory;
  uint8_t flags = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mtime_nsec = 0;
  int64_t mtime_sec = 0;
  uint64_t size = 0;
  uint64_t data = 0;   // see IndexEntry::data; local hard links hold the target's builder index
  std::string target;  // symlink target, or lower hard-link target path
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<SparseRun> sparse;
  bool removed = false;  // replaced by a later entry of the same path

  // Takes the owner, mode, time and xattrs of the tar header `te`.
  void SetMetadata(const TarEntry& te) {
    mode = te.mode;
    uid = te.uid;
    gid = te.gid;
    mtime_sec = te.mtime_sec;
    mtime_nsec = te.mtime_nsec;
    xattrs.assign(te.xattrs.begin(), te.xattrs.end());
  }
};

namespace {

EntryType ToEntryType(TarEntryType t) {
  switch (t) {
    case TarEntryType::kRegular: return EntryType::kRegular;
    case TarEntryType::kDirectory: return EntryType::kDirectory;
    case TarEntryType::kSymlink: return EntryType::kSymlink;
    case TarEntryType::kHardlink: return EntryType::kHardlink;
    case TarEntryType::kCharDevice: return EntryType::kCharDevice;
    case TarEntryType::kBlockDevice: return EntryType::kBlockDevice;
    case TarEntryType::kFifo: return EntryType::kFifo;
    case TarEntryType::kSocket: return EntryType::kSocket;
  }
  return EntryType::kRegular;
}

std::string EntryContext(const TarEntry& e) {
  return "entry " + std::to_string(e.index) + " \"" + Printable(e.path) + "\"";
}

}  // namespace

IndexBuilder::IndexBuilder() {
  Entry root;
  root.flags = kFlagImplied;
  root.mode = 0755;
  entries_.push_back(std::move(root));
}

IndexBuilder::~IndexBuilder() = default;

void IndexBuilder::Warn(const TarEntry& entry, std::string_view what) {
  if (warnings_.size() < 100) {
    warnings_.push_back(EntryContext(entry) + ": " + std::string(what));
  } else if (warnings_.size() == 100) {
    warnings_.push_back("(further warnings not shown)");
  }
}

uint32_t IndexBuilder::FindChild(uint32_t dir, std::string_view name) const {
  return table_.Find(ChildKey(dir, NameHash(name)), [&](uint32_t id) {
    return entries_[id].parent == dir && entries_[id].name == name;
  });
}

uint32_t IndexBuilder::AppendEntry(uint32_t parent, std::string_view name) {
  Entry e;
  e.parent = parent;
  e.name = name;
  e.name_hash = NameHash(name);
  entries_.push_back(std::move(e));
  return static_cast<uint32_t>(entries_.size() - 1);
}

uint32_t IndexBuilder::NewEntry(uint32_t parent, std::string_view name) {
  uint32_t id = AppendEntry(parent, name);
  table_.Insert(ChildKey(parent, entries_[id].name_hash), id);
  return id;
}

// Puts a fresh entry in the place of `old_index`, which stays behind marked removed (with its
// subtree) so that hard links made to it earlier in the tar keep its content.
uint32_t IndexBuilder::ReplaceEntry(uint32_t old_index) {
  uint32_t parent = entries_[old_index].parent;
  std::string name = entries_[old_index].name;
  uint32_t id = AppendEntry(parent, name);
  entries_[old_index].removed = true;
  table_.Replace(ChildKey(parent, entries_[id].name_hash),
                 [&](uint32_t candidate) { return candidate == old_index; }, id);
  ++dropped_;
  return id;
}

Result<uint32_t> IndexBuilder::EnsureDir(std::string_view path) {
  uint32_t dir = kRootEntry;
  for (std::string_view part : SplitPath(path)) {
    uint32_t id = FindChild(dir, part);
    if (id == ChildTable::kNone) {
      id = NewEntry(dir, part);
      Entry& e = entries_[id];
      e.type = EntryType::kDirectory;
      e.flags = kFlagImplied;
      e.mode = 0755;
    } else if (entries_[id].type == EntryType::kWhiteout) {
      // `.wh.NAME` and NAME/child in one layer: NAME is new in this layer and hides the lower one.
      Entry& e = entries_[id];
      e.type = EntryType::kDirectory;
      e.flags = kFlagImplied | kFlagOpaque;
      e.mode = 0755;
    } else if (entries_[id].type != EntryType::kDirectory) {
      // A deeper path through a non-directory of this layer: as extraction would, a directory
      // replaces it, and whatever lower layers had there stays deleted (opaque).
      id = ReplaceEntry(id);
      Entry& e = entries_[id];
      e.type = EntryType::kDirectory;
      e.flags = kFlagImplied | kFlagOpaque;
      e.mode = 0755;
    }
    dir = id;
  }
  return dir;
}

uint32_t IndexBuilder::FindPath(std::string_view normalized) const {
  uint32_t id = kRootEntry;
  for (std::string_view part : SplitPath(normalized)) {
    if (entries_[id].type != EntryType::kDirectory) return kNoEntry;
    id = FindChild(id, part);
    if (id == ChildTable::kNone) return kNoEntry;
  }
  return id;
}

Status IndexBuilder::Add(const TarEntry& te) {
  ++tar_entries_;
  auto normalized = NormalizePath(te.path);
  if (!normalized.ok()) return normalized.status().WithContext(EntryContext(te));
  const std::string& path = *normalized;
  EntryType type = ToEntryType(te.type);

  if (path.empty()) {
    if (type != EntryType::kDirectory) {
      Warn(te, "the image root must be a directory; entry skipped");
      return Status::Ok();
    }
    Entry& root = entries_[kRootEntry];
    root.flags &= static_cast<uint8_t>(~kFlagImplied);
    root.SetMetadata(te);
    return Status::Ok();
  }

  auto [parent_path, base] = SplitParent(path);
  for (std::string_view part : SplitPath(parent_path)) {
    NameKind kind = ClassifyName(part).kind;
    if (kind == NameKind::kMeta) return Status::Ok();  // inside aufs bookkeeping: never shown
    if (kind != NameKind::kPlain) {
      Warn(te, "a whiteout name is used as a directory; entry skipped");
      return Status::Ok();
    }
    if (part.size() > kNameMax) {
      Warn(te, "a path component is longer than 255 bytes; entry skipped");
      return Status::Ok();
    }
  }
  if (base.size() > kNameMax) {
    Warn(te, "name longer than 255 bytes; entry skipped");
    return Status::Ok();
  }

  ClassifiedName cls = ClassifyName(base);
  switch (cls.kind) {
    case NameKind::kMeta:
      return Status::Ok();
    case NameKind::kInvalid:
      return Status::Invalid(EntryContext(te) + ": whiteout names no file");
    case NameKind::kOpaque: {
      LAYERFS_ASSIGN_OR_RETURN(uint32_t dir, EnsureDir(parent_path));
      entries_[dir].flags |= kFlagOpaque;
      return Status::Ok();
    }
    case NameKind::kWhiteout: {
      LAYERFS_ASSIGN_OR_RETURN(uint32_t dir, EnsureDir(parent_path));
      uint32_t existing = FindChild(dir, cls.target);
      if (existing == ChildTable::kNone) {
        uint32_t id = NewEntry(dir, cls.target);
        entries_[id].type = EntryType::kWhiteout;
      } else if (entries_[existing].type == EntryType::kDirectory) {
        // NAME is in this layer too: it shows, and nothing of the lower NAME shows through it.
        entries_[existing].flags |= kFlagOpaque;
      }
      return Status::Ok();
    }
    case NameKind::kPlain:
      break;
  }

  LAYERFS_ASSIGN_OR_RETURN(uint32_t dir, EnsureDir(parent_path));
  uint32_t existing = FindChild(dir, base);

  // A hard link names an entry of this layer (resolved now) or a path in the layers below.
  uint32_t link_to = kNoEntry;
  std::string lower_target;
  if (type == EntryType::kHardlink) {
    auto target = NormalizePath(te.link_target);
    if (!target.ok()) {
      return Status::Invalid(EntryContext(te) + ": hard link target \"" +
                             Printable(te.link_target) + "\" leaves the image root");
    }
    if (target->empty()) {
      Warn(te, "hard link to the root directory; entry skipped");
      return Status::Ok();
    }
    uint32_t t = FindPath(*target);
    if (t != kNoEntry && t == existing) {
      Warn(te, "hard link to itself; entry skipped");
      return Status::Ok();
    }
    if (t != kNoEntry) {
      const Entry& te2 = entries_[t];
      if (te2.type == EntryType::kDirectory) {
        Warn(te, "hard link to a directory; entry skipped");
        return Status::Ok();
      }
      if (te2.type == EntryType::kWhiteout) {
        Warn(te, "hard link to a file this layer deletes; entry skipped");
        return Status::Ok();
      }
      if (te2.type == EntryType::kHardlink && (te2.flags & kFlagLowerLink)) {
        lower_target = te2.target;
      } else if (te2.type == EntryType::kHardlink) {
        link_to = static_cast<uint32_t>(te2.data);
      } else {
        link_to = t;
      }
    } else {
      lower_target = *target;
    }
  }

  uint32_t id;
  if (existing == ChildTable::kNone) {
    id = NewEntry(dir, base);
  } else if (entries_[existing].type == EntryType::kWhiteout) {
    id = existing;  // `.wh.NAME` then NAME in one layer: NAME shows and hides the lower NAME
    if (type == EntryType::kDirectory) entries_[id].flags |= kFlagOpaque;
  } else if (entries_[existing].type == EntryType::kDirectory && type == EntryType::kDirectory) {
    id = existing;  // same directory again: the later header's metadata, the children stay
    entries_[id].flags &= static_cast<uint8_t>(~kFlagImplied);
    ++dropped_;
  } else {
    // The earlier entry of this path (in this tar) goes. If it was not a directory, it had deleted
    // whatever lower layers have at this path, so a directory that replaces it is opaque.
    const bool was_dir = entries_[existing].type == EntryType::kDirectory;
    const uint8_t old_flags = entries_[existing].flags;
    id = ReplaceEntry(existing);
    if (type == EntryType::kDirectory) {
      entries_[id].flags = was_dir ? (old_flags & kFlagOpaque) : kFlagOpaque;
    }
  }

  Entry& e = entries_[id];
  e.type = type;
  if (type != EntryType::kDirectory) e.flags = 0;
  e.SetMetadata(te);
  e.sparse.clear();
  e.target.clear();
  e.size = 0;
  e.data = 0;
  switch (type) {
    case EntryType::kRegular:
      e.size = te.size;
      e.data = te.data_offset;
      if (te.is_sparse || !te.sparse.empty()) {
        e.flags |= kFlagSparse;
        e.sparse = te.sparse;
      }
      break;
    case EntryType::kSymlink:
      e.target = te.link_target;
      e.size = e.target.size();
      break;
    case EntryType::kHardlink:
      if (link_to != kNoEntry) {
        e.data = link_to;
      } else {
        e.flags |= kFlagLowerLink;
        e.target = std::move(lower_target);
        e.size = e.target.size();
      }
      break;
    case EntryType::kCharDevice:
    case EntryType::kBlockDevice:
      e.data = makedev(te.rdev_major, te.rdev_minor);
      break;
    default:
      break;
  }
  return Status::Ok();
}

namespace {

// Accumulates the string area, storing each distinct string once.
class StringArea {
 public:
  Result<uint32_t> Add(std::string_view s) {
    if (s.empty()) return 0u;
    auto it = offsets_.find(s);
    if (it != offsets_.end()) return it->second;
    if (data_.size() + s.size() > 0xffffffffu) {
      return Status::Invalid("layer index too large: more than 4 GiB of names");
    }
    uint32_t off = static_cast<uint32_t>(data_.size());
    data_.append(s);
    offsets_.emplace(s, off);
    return off;
  }
  const std::string& data() const { return data_; }

 private:
  std::string data_;
  std::unordered_map<std::string_view, uint32_t> offsets_;  // views into the builder's entries
};

}  // namespace

Result<std::string> IndexBuilder::Finish(const Digest& diff_id, uint64_t tar_size,
                                         const InPlace* in_place) {
  const size_t n = entries_.size();
  if (n >= kNoEntry) return Status::Invalid("layer has too many entries");

  // Which entries survive: not replaced, and every ancestor a surviving directory. Parents always
  // have smaller builder indexes than their children.
  std::vector<char> alive(n, 0);
  alive[kRootEntry] = 1;
  for (size_t i = 1; i < n; ++i) {
    const Entry& e = entries_[i];
    alive[i] = !e.removed && alive[e.parent] && entries_[e.parent].type == EntryType::kDirectory;
  }

  // Hard links whose target was later replaced keep the target's old content: the first such link
  // takes the content over, the others link to it.
  std::unordered_map<uint32_t, uint32_t> holder;
  for (size_t i = 1; i < n; ++i) {
    Entry& e = entries_[i];
    if (!alive[i] || e.type != EntryType::kHardlink || (e.flags & kFlagLowerLink)) continue;
    uint32_t t = static_cast<uint32_t>(e.data);
    if (alive[t]) continue;
    auto it = holder.find(t);
    if (it != holder.end()) {
      e.data = it->second;
      continue;
    }
    const Entry& src = entries_[t];
    e.type = src.type;
    e.flags = src.flags;
    e.mode = src.mode;
    e.uid = src.uid;
    e.gid = src.gid;
    e.mtime_sec = src.mtime_sec;
    e.mtime_nsec = src.mtime_nsec;
    e.size = src.size;
    e.data = src.data;
    e.target = src.target;
    e.xattrs = src.xattrs;
    e.sparse = src.sparse;
    holder.emplace(t, static_cast<uint32_t>(i));
  }

  // Children of each directory, sorted by name; then breadth-first numbering, which makes each
  // directory's children consecutive.
  std::vector<uint32_t> child_count(n, 0);
  for (size_t i = 1; i < n; ++i) {
    if (alive[i]) ++child_count[entries_[i].parent];
  }
  std::vector<uint32_t> child_start(n + 1, 0);
  for (size_t i = 0; i < n; ++i) child_start[i + 1] = child_start[i] + child_count[i];
  std::vector<uint32_t> children(child_start[n]);
  std::vector<uint32_t> fill(child_start.begin(), child_start.end() - 1);
  for (size_t i = 1; i < n; ++i) {
    if (alive[i]) children[fill[entries_[i].parent]++] = static_cast<uint32_t>(i);
  }
  for (size_t d = 0; d < n; ++d) {
    if (child_count[d] < 2) continue;
    std::sort(children.begin() + child_start[d], children.begin() + child_start[d + 1],
              [&](uint32_t a, uint32_t b) { return entries_[a].name < entries_[b].name; });
  }
  std::vector<uint32_t> order;
  order.reserve(n);
  order.push_back(kRootEntry);
  for (size_t k = 0; k < order.size(); ++k) {
    uint32_t d = order[k];
    order.insert(order.end(), children.begin() + child_start[d],
                 children.begin() + child_start[d + 1]);
  }
  const uint32_t count = static_cast<uint32_t>(order.size());
  std::vector<uint32_t> new_index(n, kNoEntry);
  for (uint32_t k = 0; k < count; ++k) new_index[order[k]] = k;

  std::vector<IndexEntry> out(count);
  std::vector<IndexXattr> xattrs;
  std::vector<uint64_t> sparse;
  StringArea strings;
  uint64_t regular_bytes = 0;
  for (uint32_t k = 0; k < count; ++k) {
    const Entry& e = entries_[order[k]];
    IndexEntry& r = out[k];
    std::memset(&r, 0, sizeof(r));
    r.parent = k == 0 ? 0 : new_index[e.parent];
    LAYERFS_ASSIGN_OR_RETURN(r.name_off, strings.Add(e.name));
    r.name_len = static_cast<uint16_t>(e.name.size());
    r.name_hash = e.name_hash;
    r.type = static_cast<uint8_t>(e.type);
    r.flags = e.flags;
    r.mode = e.mode & 07777;
    r.uid = e.uid;
    r.gid = e.gid;
    r.mtime_sec = e.mtime_sec;
    r.mtime_nsec = e.mtime_nsec;
    switch (e.type) {
      case EntryType::kDirectory: {
        uint32_t d = order[k];
        r.size = child_count[d];
        r.data = child_count[d] > 0 ? new_index[children[child_start[d]]] : 0;
        break;
      }
      case EntryType::kRegular:
        r.size = e.size;
        regular_bytes += e.size;
        if (e.flags & kFlagSparse) {
          r.data = sparse.size();
          sparse.push_back(e.sparse.size());
          uint64_t logical_end = 0;
          for (const SparseRun& run : e.sparse) {
            if (!FitsWithin(run.physical, run.length, tar_size) ||
                !FitsWithin(run.logical, run.length, e.size)) {
              return Status::Corrupt("entry \"" + Printable(e.name) +
                                     "\": sparse map lies outside the file or the tar");
            }
            if (run.logical < logical_end) {
              return Status::Corrupt("entry \"" + Printable(e.name) +
                                     "\": sparse map runs overlap or are out of order");
            }
            logical_end = run.logical + run.length;
            sparse.insert(sparse.end(), {run.logical, run.length, run.physical});
          }
        } else {
          if (!FitsWithin(e.data, e.size, tar_size)) {
            return Status::Corrupt("entry \"" + Printable(e.name) + "\": data runs past the tar");
          }
          r.data = e.data;
        }
        break;
      case EntryType::kSymlink: {
        LAYERFS_ASSIGN_OR_RETURN(uint32_t off, strings.Add(e.target));
        r.data = off;
        r.size = e.target.size();
        break;
      }
      case EntryType::kHardlink:
        if (e.flags & kFlagLowerLink) {
          LAYERFS_ASSIGN_OR_RETURN(uint32_t off, strings.Add(e.target));
          r.data = off;
          r.size = e.target.size();
        } else {
          r.data = new_index[e.data];
          if (r.data == kNoEntry) {
            return Status::Corrupt("entry \"" + Printable(e.name) + "\": hard link target lost");
          }
        }
        break;
      default:
        r.data = e.data;
        break;
    }
    if (e.xattrs.size() > 0xffff) {
      return Status::Invalid("entry \"" + Printable(e.name) + "\": too many xattrs");
    }
    r.xattr_first = static_cast<uint32_t>(xattrs.size());
    r.xattr_count = static_cast<uint16_t>(e.xattrs.size());
    for (const auto& [name, value] : e.xattrs) {
      IndexXattr x;
      LAYERFS_ASSIGN_OR_RETURN(x.name_off, strings.Add(name));
      x.name_len = static_cast<uint32_t>(name.size());
      LAYERFS_ASSIGN_OR_RETURN(x.value_off, strings.Add(value));
      x.value_len = static_cast<uint32_t>(value.size());
      xattrs.push_back(x);
    }
  }

  uint32_t capacity = std::bit_ceil(std::max<uint32_t>(16, 2 * count));
  std::vector<uint32_t> slots(capacity, 0);
  for (uint32_t k = 1; k < count; ++k) {
    uint32_t tag = ChildTable::Tag(ChildKey(out[k].parent, out[k].name_hash));
    uint32_t i = tag & (capacity - 1);
    while (slots[i] != 0) i = (i + 1) & (capacity - 1);
    slots[i] = k + 1;
  }

  IndexHeader h;
  std::memset(&h, 0, sizeof(h));
  std::memcpy(h.magic, kIndexMagic, sizeof(h.magic));
  h.version = kIndexVersion;
  h.header_size = sizeof(IndexHeader);
  std::memcpy(h.diff_id, diff_id.bytes().data(), sizeof(h.diff_id));
  h.tar_size = tar_size;
  h.entry_count = count;
  h.hash_capacity = capacity;
  h.xattr_count = static_cast<uint32_t>(xattrs.size());
  h.sparse_words = sparse.size();
  h.entries_offset = sizeof(IndexHeader);
  h.hash_offset = h.entries_offset + uint64_t{count} * sizeof(IndexEntry);
  h.xattrs_offset = AlignUp(h.hash_offset + uint64_t{capacity} * sizeof(uint32_t), 8);
  h.sparse_offset = h.xattrs_offset + xattrs.size() * sizeof(IndexXattr);
  h.strings_offset = h.sparse_offset + sparse.size() * sizeof(uint64_t);
  h.strings_size = strings.data().size();
  h.checkpoints_offset = AlignUp(h.strings_offset + h.strings_size, 8);
  std::vector<IndexCheckpoint> points;
  std::string windows;
  if (in_place != nullptr) {
    const CheckpointList& list = *in_place->checkpoints;
    h.codec = list.codec;
    h.span = list.span;
    h.blob_size = in_place->blob_size;
    std::memcpy(h.blob_digest, in_place->blob_digest.bytes().data(), sizeof(h.blob_digest));
    if (list.points.size() > 0xffffffffu) return Status::Invalid("too many checkpoints");
    for (const Checkpoint& c : list.points) {
      IndexCheckpoint p;
      std::memset(&p, 0, sizeof(p));
      p.out_offset = c.out;
      p.in_offset = c.in;
      p.bits = c.bits;
      p.window_raw = c.window_raw;
      p.window_offset = windows.size();
      p.window_size = static_cast<uint32_t>(c.window.size());
      windows += c.window;
      points.push_back(p);
    }
  }
  h.checkpoint_count = static_cast<uint32_t>(points.size());
  h.windows_offset = h.checkpoints_offset + points.size() * sizeof(IndexCheckpoint);
  h.windows_size = windows.size();
  h.file_size = AlignUp(h.windows_offset + h.windows_size, 8);
  h.tar_entries = tar_entries_;
  h.regular_bytes = regular_bytes;
  h.dropped_entries = dropped_;

  std::string file(h.file_size, '\0');
  auto put = [&](uint64_t offset, const void* data, size_t size) {
    if (size > 0) std::memcpy(file.data() + offset, data, size);
  };
  put(0, &h, sizeof(h));
  put(h.entries_offset, out.data(), out.size() * sizeof(IndexEntry));
  put(h.hash_offset, slots.data(), slots.size() * sizeof(uint32_t));
  put(h.xattrs_offset, xattrs.data(), xattrs.size() * sizeof(IndexXattr));
  put(h.sparse_offset, sparse.data(), sparse.size() * sizeof(uint64_t));
  put(h.strings_offset, strings.data().data(), strings.data().size());
  put(h.checkpoints_offset, points.data(), points.size() * sizeof(IndexCheckpoint));
  put(h.windows_offset, windows.data(), windows.size());
  uint64_t checksum = Hash64(file.data(), file.size());
  std::memcpy(file.data() + offsetof(IndexHeader, checksum), &checksum, sizeof(checksum));
  return file;
}

}  // namespace layerfs
