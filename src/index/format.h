// The on-disk layer index: one file per layer, memory-mapped and read in place.
//
// A layer index describes every entry of one layer tar so that the tar never has to be parsed
// again: names, metadata, where each file's bytes lie in the uncompressed tar, whiteouts. It is
// keyed by the sha256 of the uncompressed tar (the layer's diff_id) and stored in the cache as
//   <cache>/index/sha256/<hex>.idx
//
// Layout: little-endian, every section starts at a multiple of 8 bytes.
//
//   IndexHeader          256 bytes
//   IndexEntry[n]        64 bytes each, breadth-first: entry 0 is the layer's root directory, the
//                        children of each directory are consecutive and sorted bytewise by name,
//                        and every entry's parent has a smaller index than the entry.
//   uint32 slot[cap]     hash table over (parent, name): slot = entry index + 1, 0 = empty;
//                        key ChildKey(parent, name_hash) (base/hash.h), linear probing,
//                        cap a power of two with load <= 1/2.
//   IndexXattr[x]        16 bytes each: name and value as (offset, length) in the string area.
//   uint64 sparse[s]     sparse maps: for a sparse file, sparse[data] = run count r, then r runs
//                        of (logical offset, length, physical offset in the tar).
//   char strings[]       names, symlink targets, hard-link target paths, xattr names and values.
//   IndexCheckpoint[c]   32 bytes each (compressed layers served in place, else none): where the
//                        compressed blob can be entered, in increasing uncompressed offset.
//   char windows[]       the checkpoints' 32 KiB windows, each compressed with zstd.
//
// An index of a layer served in place from its compressed blob (codec gzip or zstd) is keyed by
// the blob's digest instead (the checkpoints belong to that one compressed form), and its header
// records the blob's digest and size.
//
// The checksum is XXH3-64 over the whole file with the checksum field read as zero. A reader
// checks magic, version, size and checksum, then every offset, count and index against the bounds
// of its section before it trusts the file (index_reader.cc): an index that fails is rebuilt.
#ifndef LAYERFS_INDEX_FORMAT_H_
#define LAYERFS_INDEX_FORMAT_H_

#include <cstdint>

namespace layerfs {

inline constexpr char kIndexMagic[8] = {'L', 'A', 'Y', 'E', 'R', 'F', 'S', 'I'};
// Bump on any change to the layout or meaning of a field; older indexes are then rebuilt.
inline constexpr uint32_t kIndexVersion = 2;

enum class EntryType : uint8_t {
  kRegular = 1,
  kDirectory = 2,
  kSymlink = 3,
  kHardlink = 4,  // another name for an earlier entry (or, with kLowerLink, a path below)
  kCharDevice = 5,
  kBlockDevice = 6,
  kFifo = 7,
  kSocket = 8,
  kWhiteout = 9,  // `.wh.NAME`: the entry's name is NAME; hides NAME in lower layers
};

enum EntryFlags : uint8_t {
  kFlagOpaque = 1,     // directory with `.wh..wh..opq`: lower layers add nothing inside it
  kFlagImplied = 2,    // directory not in the tar, implied by a deeper path
  kFlagSparse = 4,     // regular file whose data is a sparse map (see `data`)
  kFlagLowerLink = 8,  // hard link whose target is not in this layer: `data`/`size` is its path
};

struct IndexHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_size;  // sizeof(IndexHeader)
  uint64_t file_size;
  uint64_t checksum;
  uint8_t diff_id[32];  // sha256 of the uncompressed tar
  uint64_t tar_size;    // length of the uncompressed tar
  uint32_t entry_count;
  uint32_t hash_capacity;
  uint32_t xattr_count;
  uint32_t reserved0;
  uint64_t sparse_words;
  uint64_t entries_offset;
  uint64_t hash_offset;
  uint64_t xattrs_offset;
  uint64_t sparse_offset;
  uint64_t strings_offset;
  uint64_t strings_size;
  // Facts about the tar for `layerfs inspect`; not needed to serve the layer.
  uint64_t tar_entries;     // headers read from the tar, whiteouts and duplicates included
  uint64_t regular_bytes;   // sum of regular file sizes
  uint32_t dropped_entries; // entries replaced by a later entry of the same path
  uint32_t reserved1;
  // How the uncompressed tar is reached (IndexCodec). kIndexCodecNone: it is a file (the blob or a
  // decompressed copy), and there are no checkpoints.
  uint32_t codec;
  uint32_t checkpoint_count;
  uint64_t checkpoints_offset;
  uint64_t windows_offset;
  uint64_t windows_size;
  uint64_t span;        // the uncompressed distance between checkpoints that was asked for
  uint64_t blob_size;   // codec gzip/zstd: length of the compressed blob
  uint8_t blob_digest[32];  // codec gzip/zstd: sha256 of the compressed blob
  uint8_t reserved[8];
};
static_assert(sizeof(IndexHeader) == 256);

struct IndexEntry {
  uint32_t parent;     // index of the parent directory; the root is its own parent
  uint32_t name_off;   // name in the string area (the root's name is empty)
  uint32_t name_hash;  // NameHash(name)
  uint16_t name_len;   // at most kNameMax
  uint8_t type;        // EntryType
  uint8_t flags;       // EntryFlags
  uint32_t mode;       // permission bits, setuid/setgid/sticky included (07777)
  uint32_t uid;
  uint32_t gid;
  uint32_t mtime_nsec;
  int64_t mtime_sec;
  // kRegular: file size. kSymlink: target length. kDirectory: number of children.
  // kHardlink with kFlagLowerLink: target path length.
  uint64_t size;
  // kRegular: offset of the data in the uncompressed tar, or with kFlagSparse the index of its map
  // in sparse[]. kDirectory: index of the first child. kSymlink: target in the string area.
  // kHardlink: index of the target entry, or with kFlagLowerLink the target path in the string
  // area. Devices: the device number (makedev).
  uint64_t data;
  uint32_t xattr_first;
  uint16_t xattr_count;
  uint16_t reserved;
};
static_assert(sizeof(IndexEntry) == 64);

enum IndexCodec : uint32_t {
  kIndexCodecNone = 0,
  kIndexCodecGzip = 1,  // checkpoints inside deflate streams (the zran technique)
  kIndexCodecZstd = 2,  // checkpoints at zstd frame starts
};

// A place to start decompressing: decoding the blob from byte `in_offset` (after priming the
// decoder with `bits` bits of the byte before it and the window) yields the uncompressed tar from
// `out_offset` on. The first checkpoint has out_offset 0; out_offset increases strictly and
// in_offset never decreases. Decoding from a checkpoint never has to cross a gzip member boundary
// before the next checkpoint: every member start is a checkpoint.
struct IndexCheckpoint {
  uint64_t out_offset;
  uint64_t in_offset;
  uint64_t window_offset;  // in the windows area
  uint32_t window_size;    // compressed size (0: no window)
  uint16_t window_raw;     // its size uncompressed, at most kWindowMax
  uint8_t bits;            // gzip: 0-7 low bits of byte in_offset - 1 still to decode (its high bits)
  uint8_t reserved;
};
static_assert(sizeof(IndexCheckpoint) == 32);

// The deflate window: the most a back-reference reaches.
inline constexpr uint32_t kWindowMax = 32768;

struct IndexXattr {
  uint32_t name_off;
  uint32_t name_len;
  uint32_t value_off;
  uint32_t value_len;
};
static_assert(sizeof(IndexXattr) == 16);

// The root entry of every index.
inline constexpr uint32_t kRootEntry = 0;
// "No entry", returned by lookups that find nothing.
inline constexpr uint32_t kNoEntry = 0xffffffffu;

}  // namespace layerfs

#endif  // LAYERFS_INDEX_FORMAT_H_
