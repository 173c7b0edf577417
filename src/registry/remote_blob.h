// RemoteBlob: a layer blob in a registry, fetched chunk by chunk as it is read.
//
// The chunks (chunk_size bytes of the blob, the last one shorter) are fetched with HTTP Range
// requests when a read needs them, each checked against its SHA-256 from the published index
// before a byte of it is served, and kept in the cache: CACHE/blobs/sha256/<hex>.partial holds
// them at their offsets (a sparse file of the blob's size), <hex>.present one byte per chunk, set
// once the chunk is written; so a second mount, and other images with the layer, reuse them
// (checking each against its digest again before its first use). A
// chunk that does not match its digest is fetched once more, then fails the read with EIO. When
// every chunk is here, the whole blob is checked against the manifest's digest: it then becomes
// CACHE/blobs/sha256/<hex>, a blob like any fetched whole; a mismatch fails the layer's reads from
// then on (EIO, one log line). Concurrent readers of one chunk fetch it once; a read of several
// chunks in a row fetches those missing in one request.
#ifndef LAYERFS_REGISTRY_REMOTE_BLOB_H_
#define LAYERFS_REGISTRY_REMOTE_BLOB_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "blob/byte_source.h"
#include "layerfs/digest.h"
#include "registry/registry_client.h"

namespace layerfs {

class RemoteBlob final : public ByteSource {
 public:
  // `chunk_digests`: 32 bytes per chunk, checked to be the right count here.
  static Result<std::shared_ptr<RemoteBlob>> Open(std::shared_ptr<RegistryClient> client,
                                                  const std::string& cache_dir,
                                                  const Digest& digest, uint64_t size,
                                                  uint64_t chunk_size, std::string chunk_digests);
  ~RemoteBlob() override;

  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  Status ReadAt(uint64_t offset, char* buf, size_t size) const override;
  bool Intact() const override { return !failed_.load(); }
  // Fetches the chunks of the range that no one has or fetches, each run of consecutive ones in
  // one request (a span of a compressed layer often covers two or three chunks).
  Status WillRead(uint64_t offset, uint64_t length) const override;

  // Fetches every chunk not here yet, in order, on a thread of its own, leaving the link to
  // demand reads: it waits until no read of the process has waited for a chunk for a second.
  // A chunk that fails is tried again later.
  void StartBackground();

  // Chunks here / all chunks (for tests and inspect).
  size_t chunks_present() const;
  size_t chunk_count() const { return present_.size(); }

 private:
  RemoteBlob() = default;
  Status EnsureChunk(size_t k, bool demand) const;
  // Fetches the chunks of [first, last] that no one has or fetches, each run of consecutive ones
  // in one request; a chunk that does not match its digest is left missing.
  Status FetchChunks(size_t first, size_t last, bool demand) const;
  void BackgroundLoop();
  // Fetches chunk k (or, if `recorded`, checks the copy an earlier mount fetched).
  Status FetchChunk(size_t k, bool recorded) const;
  // Checks `bytes` against chunk k's digest (false: they do not match), then writes them and
  // records the chunk.
  Result<bool> StoreChunk(size_t k, std::string_view bytes) const;
  void MaybeComplete() const;

  std::shared_ptr<RegistryClient> client_;
  Digest digest_;
  uint64_t size_ = 0;
  uint64_t chunk_size_ = 0;
  std::string chunk_digests_;
  std::string name_;
  std::string final_path_, partial_path_, present_path_;
  UniqueFd data_;  // the .partial file (or the whole blob once complete)
  UniqueFd present_fd_;
  mutable std::mutex mu_;
  mutable std::condition_variable fetched_;
  mutable std::vector<uint8_t> present_;  // here and checked by this process
  std::vector<uint8_t> recorded_;         // marked present in the record when opened
  mutable std::set<size_t> fetching_;
  mutable size_t missing_ = 0;
  mutable std::atomic<bool> failed_{false};
  mutable bool completed_ = false;
  mutable size_t demand_ = 0;  // demand reads fetching now
  bool stopping_ = false;      // under mu_
  std::thread background_;
};

}  // namespace layerfs

#endif  // LAYERFS_REGISTRY_REMOTE_BLOB_H_
