// LayerStore: the cache of layer indexes and uncompressed layer copies, and the one place that
// decides whether a layer can be served from what is cached or must be (re)indexed.
//
// Cache layout (all under the cache directory, default $XDG_CACHE_HOME/layerfs):
//   index/sha256/<diff_id hex>.idx   layer index (format.h) of a layer served from a file (the
//                                    blob, or its copy below), keyed by the uncompressed digest
//   index/sha256/<blob hex>.idx      index of a gzip or zstd layer served in place from its blob,
//                                    with its checkpoints, keyed by the compressed blob's digest
//   blobs/sha256/<diff_id hex>.tar   uncompressed copy of a zstd layer that cannot be entered in
//                                    the middle (one frame), or of a compressed layer whose blob
//                                    digest the image does not state
//   verified/<16 hex>                stamp: "this file range was checked against this digest,
//                                    when the file had this device, inode, size, mtime, ctime"
//   locks/<diff_id hex>              flock()ed by the process building that layer
// Every file is written under a temporary name and renamed into place once complete, so a crash
// leaves either nothing or a whole file; an index or stamp that fails its checks is rebuilt.
#ifndef LAYERFS_INDEX_LAYER_STORE_H_
#define LAYERFS_INDEX_LAYER_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "blob/byte_source.h"
#include "blob/span_cache.h"
#include "blob/span_decoder.h"
#include "index/layer_index.h"
#include "layerfs/status.h"
#include "oci/manifest.h"

namespace layerfs {

// A layer ready to serve: its index and where its uncompressed tar is read from (read it through
// index/layer_data.h).
struct Layer {
  LayerIndex index;
  std::shared_ptr<const ByteSource> data;
  std::string label;         // "layer 2 (sha256:ab12…)"
  size_t position = 0;       // 0 is the bottom layer
  bool indexed_now = false;  // built during this load (not found in the cache)
  bool verified_now = false; // its digest was computed during this load
  // How its bytes are served, for `layerfs inspect`: "in place", "checkpoints N (span S)",
  // "decompressed copy".
  std::string served;
  std::vector<std::string> warnings;
};

struct StoreStats {
  size_t layers_indexed = 0;   // built now
  size_t layers_verified = 0;  // hashed now (built, or re-verified after a change)
  uint64_t bytes_read = 0;
};

// Reports how far the indexing of a layer has come: bytes of its blob read so far, of `total`.
// Called only for layers that are being indexed (not for those served from the cache), from the
// threads that load them, so it must be thread-safe; a final call has done == total.
using IndexProgress = std::function<void(const LayerSpec& spec, uint64_t done, uint64_t total)>;

// A source file whose mtime or ctime is less than this older than the moment layerfs began reading
// it gets no stamp: a write in the same timestamp tick as our read would leave both unchanged.
// Timestamps on Linux filesystems are at least this fine (one jiffy, 1 to 10 ms, on kernels without
// fine-grained timestamps).
inline constexpr int64_t kRacyStampNs = 100'000'000;

class LayerStore {
 public:
  // Uses `dir` as the cache (created when first needed).
  explicit LayerStore(std::string dir) : dir_(std::move(dir)) {}

  // The default cache directory: $XDG_CACHE_HOME/layerfs, else $HOME/.cache/layerfs.
  static std::string DefaultDir();

  // Loads one layer: from the cache when its index and stamps are valid, else by reading the blob
  // once (indexing, verifying its digests, and for compressed blobs writing the uncompressed copy).
  Result<Layer> Load(const LayerSpec& spec) const;

  // Loads all layers of an image, several at a time; the first error stops the load.
  Result<std::vector<Layer>> LoadAll(const std::vector<LayerSpec>& specs, unsigned threads = 0,
                                     StoreStats* stats = nullptr) const;

  // Sets the progress callback of later loads (none by default).
  void set_progress(IndexProgress progress) { progress_ = std::move(progress); }
  // The distance between checkpoints of compressed layers indexed from now on (0: the default).
  // With `rebuild`, a cached index with another span is rebuilt rather than used.
  void set_span(uint64_t span, bool rebuild) {
    span_ = span;
    span_rebuild_ = rebuild;
  }
  // The memory that decompressed spans of compressed layers may take, shared by all the layers
  // this store loads from now on.
  void set_span_cache(uint64_t bytes) { span_cache_ = std::make_shared<SpanCache>(bytes); }
  const std::shared_ptr<SpanCache>& span_cache() const { return span_cache_; }
  void set_inflater(Inflater inflater) { inflater_ = inflater; }

  const std::string& dir() const { return dir_; }
  std::string IndexPath(const Digest& diff_id) const;
  std::string CopyPath(const Digest& diff_id) const;

 private:
  // The layer from the cache, or nothing when it must be built; `log` says why a cached index
  // is not used.
  Result<std::optional<Layer>> FromCache(const LayerSpec& spec, bool log) const;
  // The layer served in place from its compressed blob, when a valid index for that blob is
  // cached.
  Result<std::optional<Layer>> InPlaceFromCache(const LayerSpec& spec) const;
  // Builds the layer's index (and copy), holding locks/<key> so that one process does it.
  Result<Layer> Build(const LayerSpec& spec) const;
  // Removes what an older version of layerfs cached for the layer (an index of another format
  // version keyed by its diff_id, and the uncompressed copy that went with it).
  void RemoveOutdated(const Digest& diff_id) const;
  // Checks the blob of `spec` against `digest` unless a stamp says it was (and records a stamp);
  // whether it was hashed now.
  Result<bool> VerifyBlob(const LayerSpec& spec, const Digest& digest) const;
  // A layer read lazily from a registry through its published index (LayerSpec::remote).
  Result<Layer> RemoteLayer(const LayerSpec& spec) const;
  Result<Layer> InPlaceLayer(const LayerSpec& spec, LayerIndex index) const;
  bool StampValid(const Digest& digest, int fd, uint64_t offset, uint64_t length) const;
  // Records that the range was verified. `verified_since` (CLOCK_REALTIME ns, 0 for files only
  // layerfs writes) is when reading it began: a file whose mtime or ctime is not clearly older
  // (kRacyStampNs) could have changed within the same timestamp tick after it was read, so it gets
  // no stamp and is verified again next time.
  Status WriteStamp(const Digest& digest, int fd, uint64_t offset, uint64_t length,
                    int64_t verified_since) const;
  std::string StampPath(const Digest& digest, const struct stat& st, uint64_t offset,
                        uint64_t length) const;

  std::string dir_;
  IndexProgress progress_;
  uint64_t span_ = 0;
  bool span_rebuild_ = false;
  std::shared_ptr<SpanCache> span_cache_ = std::make_shared<SpanCache>(kDefaultSpanCache);
  Inflater inflater_ = DefaultInflater();
};

// Whether `spec` is served in place (gzip, zstd of several frames) when it is indexed: it is
// compressed and the image states its blob's digest.
bool MayServeInPlace(const LayerSpec& spec);

}  // namespace layerfs

#endif  // LAYERFS_INDEX_LAYER_STORE_H_
