#include "index/layer_index.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "base/child_table.h"
#include "base/coding.h"
#include "base/hash.h"
#include "base/path.h"
#include "base/unique_fd.h"

namespace layerfs {

Result<LayerIndex> LayerIndex::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return Status::FromErrno(errno, path);
  LayerIndex index;
  LAYERFS_ASSIGN_OR_RETURN(MappedFile map, MappedFile::Map(fd.get(), path));
  auto shared = std::make_shared<MappedFile>(std::move(map));
  index.base_ = shared->data();
  index.size_ = shared->size();
  index.storage_ = std::move(shared);
  LAYERFS_RETURN_IF_ERROR(index.Validate().WithContext(path));
  return index;
}

Result<LayerIndex> LayerIndex::FromBytes(std::string bytes) {
  LayerIndex index;
  // Entries are read in place: copy into 8-byte-aligned storage (std::string's is not promised).
  auto owned = std::make_shared<std::string>();
  owned->resize(bytes.size() + 8);
  size_t pad = (8 - reinterpret_cast<uintptr_t>(owned->data()) % 8) % 8;
  std::memcpy(owned->data() + pad, bytes.data(), bytes.size());
  index.base_ = reinterpret_cast<const uint8_t*>(owned->data() + pad);
  index.storage_ = std::move(owned);
  index.size_ = bytes.size();
  LAYERFS_RETURN_IF_ERROR(index.Validate());
  return index;
}

Digest LayerIndex::diff_id() const {
  std::array<uint8_t, Digest::kSize> bytes;
  std::memcpy(bytes.data(), header().diff_id, bytes.size());
  return Digest(bytes);
}

Status LayerIndex::Validate() {
  auto bad = [](const std::string& what) { return Status::Corrupt("invalid index: " + what); };
  if (size_ < sizeof(IndexHeader)) return bad("shorter than its header");
  const IndexHeader& h = header();
  if (std::memcmp(h.magic, kIndexMagic, sizeof(kIndexMagic)) != 0) return bad("bad magic");
  if (h.version != kIndexVersion) {
    return bad("format version " + std::to_string(h.version) + ", expected " +
               std::to_string(kIndexVersion));
  }
  if (h.header_size != sizeof(IndexHeader)) return bad("header size");
  if (h.file_size != size_) return bad("file size does not match its header (truncated?)");

  // Checksum over the file with the checksum field as zero.
  {
    constexpr size_t kField = offsetof(IndexHeader, checksum);
    uint64_t zero = 0;
    std::string head(reinterpret_cast<const char*>(base_), sizeof(IndexHeader));
    std::memcpy(head.data() + kField, &zero, sizeof(zero));
    uint64_t sum = Hash64Concat(head.data(), head.size(), base_ + sizeof(IndexHeader),
                                size_ - sizeof(IndexHeader));
    if (sum != h.checksum) return bad("checksum mismatch");
  }

  const uint64_t n = h.entry_count;
  if (n == 0) return bad("no root entry");
  if (h.hash_capacity == 0 || (h.hash_capacity & (h.hash_capacity - 1)) != 0 ||
      h.hash_capacity < n) {
    return bad("hash table capacity");
  }
  auto section = [&](uint64_t offset, uint64_t count, uint64_t elem) {
    return offset % 8 == 0 && count <= size_ / elem && FitsWithin(offset, count * elem, size_);
  };
  if (!section(h.entries_offset, n, sizeof(IndexEntry)) ||
      !(h.hash_offset % 4 == 0 && h.hash_capacity <= size_ / 4 &&
        FitsWithin(h.hash_offset, uint64_t{h.hash_capacity} * 4, size_)) ||
      !section(h.xattrs_offset, h.xattr_count, sizeof(IndexXattr)) ||
      !section(h.sparse_offset, h.sparse_words, sizeof(uint64_t)) ||
      !FitsWithin(h.strings_offset, h.strings_size, size_) || h.strings_size > 0xffffffffu) {
    return bad("section out of bounds");
  }
  entries_ = reinterpret_cast<const IndexEntry*>(base_ + h.entries_offset);
  slots_ = reinterpret_cast<const uint32_t*>(base_ + h.hash_offset);
  xattrs_ = reinterpret_cast<const IndexXattr*>(base_ + h.xattrs_offset);
  sparse_ = reinterpret_cast<const uint64_t*>(base_ + h.sparse_offset);
  strings_ = reinterpret_cast<const char*>(base_ + h.strings_offset);

  const uint64_t strings_size = h.strings_size;
  auto string_ok = [&](uint64_t off, uint64_t len) { return FitsWithin(off, len, strings_size); };
  for (uint64_t x = 0; x < h.xattr_count; ++x) {
    const IndexXattr& a = xattrs_[x];
    if (!string_ok(a.name_off, a.name_len) || !string_ok(a.value_off, a.value_len)) {
      return bad("xattr out of bounds");
    }
  }

  const IndexEntry& root = entries_[0];
  if (root.type != static_cast<uint8_t>(EntryType::kDirectory) || root.parent != 0 ||
      root.name_len != 0) {
    return bad("root entry is not a directory");
  }
  for (uint64_t i = 0; i < n; ++i) {
    const IndexEntry& e = entries_[i];
    auto bad_entry = [&](const char* what) {
      return bad("entry " + std::to_string(i) + ": " + what);
    };
    if (i > 0) {
      if (e.parent >= i) return bad_entry("parent after child");
      if (entries_[e.parent].type != static_cast<uint8_t>(EntryType::kDirectory)) {
        return bad_entry("parent is not a directory");
      }
      if (e.name_len == 0 || e.name_len > kNameMax) return bad_entry("name length");
    }
    if (!string_ok(e.name_off, e.name_len)) return bad_entry("name out of bounds");
    if (!FitsWithin(e.xattr_first, e.xattr_count, h.xattr_count)) {
      return bad_entry("xattrs out of bounds");
    }
    switch (static_cast<EntryType>(e.type)) {
      case EntryType::kDirectory:
        if (e.size > 0 && (e.data <= i || !FitsWithin(e.data, e.size, n))) {
          return bad_entry("children out of bounds");
        }
        for (uint64_t c = e.data; c < e.data + e.size; ++c) {
          if (entries_[c].parent != i) return bad_entry("child with another parent");
        }
        break;
      case EntryType::kRegular:
        if (e.flags & kFlagSparse) {
          if (e.data >= h.sparse_words) return bad_entry("sparse map out of bounds");
          uint64_t runs = sparse_[e.data];
          if (runs > (h.sparse_words - e.data - 1) / 3) return bad_entry("sparse map length");
          uint64_t logical_end = 0;
          for (uint64_t k = 0; k < runs; ++k) {
            const uint64_t* p = sparse_ + e.data + 1 + 3 * k;
            if (!FitsWithin(p[0], p[1], e.size) || !FitsWithin(p[2], p[1], h.tar_size)) {
              return bad_entry("sparse run out of bounds");
            }
            // Readers rely on runs in file order without overlap.
            if (p[0] < logical_end) return bad_entry("sparse runs out of order");
            logical_end = p[0] + p[1];
          }
        } else if (!FitsWithin(e.data, e.size, h.tar_size)) {
          return bad_entry("data out of bounds");
        }
        break;
      case EntryType::kSymlink:
        if (!string_ok(e.data, e.size)) return bad_entry("symlink target out of bounds");
        break;
      case EntryType::kHardlink:
        if (e.flags & kFlagLowerLink) {
          if (!string_ok(e.data, e.size)) return bad_entry("link target out of bounds");
        } else {
          if (e.data >= n) return bad_entry("link target out of bounds");
          EntryType t = static_cast<EntryType>(entries_[e.data].type);
          if (t == EntryType::kDirectory || t == EntryType::kWhiteout ||
              t == EntryType::kHardlink) {
            return bad_entry("link target type");
          }
        }
        break;
      case EntryType::kCharDevice:
      case EntryType::kBlockDevice:
      case EntryType::kFifo:
      case EntryType::kSocket:
      case EntryType::kWhiteout:
        break;
      default:
        return bad_entry("unknown type");
    }
  }
  // Every children range is checked above; every non-root entry must also be inside its parent's
  // range, so that the tree has no entry reachable twice or not at all.
  for (uint64_t i = 1; i < n; ++i) {
    const IndexEntry& p = entries_[entries_[i].parent];
    if (i < p.data || i >= p.data + p.size) return bad("entry outside its parent's children");
  }
  for (uint64_t s = 0; s < h.hash_capacity; ++s) {
    if (slots_[s] > n) return bad("hash slot out of bounds");
  }
  return ValidateCheckpoints();
}

Status LayerIndex::ValidateCheckpoints() {
  auto bad = [](const std::string& what) {
    return Status::Corrupt("invalid index: checkpoints: " + what);
  };
  const IndexHeader& h = header();
  if (h.codec == kIndexCodecNone) {
    if (h.checkpoint_count != 0) return bad("present for a layer served from a file");
    return Status::Ok();
  }
  if (h.codec != kIndexCodecGzip && h.codec != kIndexCodecZstd) return bad("unknown codec");
  const uint64_t c = h.checkpoint_count;
  if (h.checkpoints_offset % 8 != 0 || c > size_ / sizeof(IndexCheckpoint) ||
      !FitsWithin(h.checkpoints_offset, c * sizeof(IndexCheckpoint), size_) ||
      !FitsWithin(h.windows_offset, h.windows_size, size_)) {
    return bad("section out of bounds");
  }
  if (c == 0 && h.tar_size > 0) return bad("none for a non-empty layer");
  checkpoints_ = reinterpret_cast<const IndexCheckpoint*>(base_ + h.checkpoints_offset);
  windows_ = reinterpret_cast<const char*>(base_ + h.windows_offset);
  for (uint64_t k = 0; k < c; ++k) {
    const IndexCheckpoint& p = checkpoints_[k];
    auto bad_point = [&](const char* what) {
      return bad("checkpoint " + std::to_string(k) + ": " + what);
    };
    if (k == 0 ? p.out_offset != 0 : p.out_offset <= checkpoints_[k - 1].out_offset) {
      return bad_point("uncompressed offsets not increasing from 0");
    }
    if (k > 0 && p.in_offset < checkpoints_[k - 1].in_offset) {
      return bad_point("compressed offsets decreasing");
    }
    if (p.out_offset >= h.tar_size) return bad_point("past the end of the tar");
    if (p.in_offset > h.blob_size || (p.bits > 0 && p.in_offset == 0) || p.bits > 7) {
      return bad_point("past the end of the blob");
    }
    if (p.window_raw > kWindowMax || (p.window_raw == 0) != (p.window_size == 0) ||
        !FitsWithin(p.window_offset, p.window_size, h.windows_size)) {
      return bad_point("window of the wrong size");
    }
    if (h.codec == kIndexCodecZstd && (p.bits != 0 || p.window_size != 0)) {
      return bad_point("zstd checkpoint with a window");
    }
  }
  return Status::Ok();
}

CheckpointTable LayerIndex::checkpoints() const {
  CheckpointTable t;
  t.keep = storage_;
  t.codec = static_cast<IndexCodec>(header().codec);
  t.points = checkpoints_;
  t.count = header().checkpoint_count;
  t.windows = windows_;
  t.windows_size = header().windows_size;
  return t;
}

Digest LayerIndex::blob_digest() const {
  std::array<uint8_t, Digest::kSize> bytes;
  std::memcpy(bytes.data(), header().blob_digest, bytes.size());
  return Digest(bytes);
}

uint32_t LayerIndex::FindChild(uint32_t dir, std::string_view name) const {
  const uint32_t name_hash = NameHash(name);
  const uint32_t tag = ChildTable::Tag(ChildKey(dir, name_hash));
  const uint32_t mask = header().hash_capacity - 1;
  // Bounded by the capacity so that a table without an empty slot cannot loop forever.
  for (uint32_t probe = 0, i = tag & mask; probe <= mask; ++probe, i = (i + 1) & mask) {
    uint32_t slot = slots_[i];
    if (slot == 0) return kNoEntry;
    const IndexEntry& e = entries_[slot - 1];
    if (e.parent == dir && e.name_hash == name_hash && slot - 1 != 0 && this->name(e) == name) {
      return slot - 1;
    }
  }
  return kNoEntry;
}

uint32_t LayerIndex::FindPath(std::string_view normalized) const {
  uint32_t id = kRootEntry;
  size_t pos = 0;
  while (pos < normalized.size()) {
    size_t end = normalized.find('/', pos);
    if (end == std::string_view::npos) end = normalized.size();
    if (entries_[id].type != static_cast<uint8_t>(EntryType::kDirectory)) return kNoEntry;
    id = FindChild(id, normalized.substr(pos, end - pos));
    if (id == kNoEntry) return kNoEntry;
    pos = end + 1;
  }
  return id;
}

std::string LayerIndex::PathOf(uint32_t i) const {
  std::vector<std::string_view> parts;
  while (i != kRootEntry) {
    parts.push_back(name(entries_[i]));
    i = entries_[i].parent;
  }
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!path.empty()) path += '/';
    path += *it;
  }
  return path;
}

}  // namespace layerfs
