#include "registry/remote_blob.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/file_util.h"
#include "base/log.h"
#include "blob/sha256.h"

namespace layerfs {
namespace {

// When a read last waited for a chunk, of any blob of this process (a daemon serves one mount):
// the background fetches wait until reads have waited for none for kQuiet, so that they do not
// take the link from a start-up that reads.
std::atomic<int64_t> last_demand_ns{0};
constexpr std::chrono::milliseconds kQuiet{1000};
// Chunks the background fetches per request: about 1 MiB with the default chunk size, short
// enough that a demand read that comes meanwhile does not wait long for the link.
constexpr size_t kBackgroundRun = 4;

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<std::shared_ptr<RemoteBlob>> RemoteBlob::Open(std::shared_ptr<RegistryClient> client,
                                                     const std::string& cache_dir,
                                                     const Digest& digest, uint64_t size,
                                                     uint64_t chunk_size,
                                                     std::string chunk_digests) {
  if (chunk_size == 0) return Status::Invalid("chunk size 0");
  const uint64_t chunks = (size + chunk_size - 1) / chunk_size;
  if (chunk_digests.size() != chunks * Digest::kSize) {
    return Status::Corrupt("the published chunk digests of blob " + digest.str() + " are " +
                           std::to_string(chunk_digests.size()) + " bytes, not " +
                           std::to_string(chunks * Digest::kSize));
  }
  std::shared_ptr<RemoteBlob> b(new RemoteBlob());
  b->client_ = std::move(client);
  b->digest_ = digest;
  b->size_ = size;
  b->chunk_size_ = chunk_size;
  b->chunk_digests_ = std::move(chunk_digests);
  const std::string dir = cache_dir + "/blobs/sha256";
  LAYERFS_RETURN_IF_ERROR(MakeDirs(dir).WithContext("cache directory"));
  b->final_path_ = dir + "/" + digest.hex();
  b->partial_path_ = b->final_path_ + ".partial";
  b->present_path_ = b->final_path_ + ".present";
  b->name_ = b->client_->name() + "@" + digest.str();
  b->present_.assign(static_cast<size_t>(chunks), 0);

  // Fetched whole before (or completed by another mount): nothing to fetch.
  b->data_.reset(::open(b->final_path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (b->data_) {
    std::fill(b->present_.begin(), b->present_.end(), 1);
    b->completed_ = true;
    return b;
  }
  b->data_.reset(::open(b->partial_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!b->data_) return Status::FromErrno(errno, b->partial_path_);
  if (::ftruncate(b->data_.get(), static_cast<off_t>(size)) != 0) {
    return Status::FromErrno(errno, b->partial_path_);
  }
  b->present_fd_.reset(
      ::open(b->present_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!b->present_fd_) return Status::FromErrno(errno, b->present_path_);
  std::vector<uint8_t> record(b->present_.size(), 0);
  ssize_t n = ::pread(b->present_fd_.get(), record.data(), record.size(), 0);
  if (n < 0) return Status::FromErrno(errno, b->present_path_);
  // Recorded chunks are checked again before they are first used: a crash may have kept the
  // record of a chunk whose bytes never reached the disk.
  b->recorded_.assign(b->present_.size(), 0);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) b->recorded_[i] = record[i] == 1;
  b->missing_ = b->present_.size();
  return b;
}

RemoteBlob::~RemoteBlob() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  fetched_.notify_all();
  if (background_.joinable()) background_.join();
}

void RemoteBlob::StartBackground() {
  std::lock_guard<std::mutex> lock(mu_);
  if (background_.joinable() || missing_ == 0 || failed_) return;
  background_ = std::thread([this] { BackgroundLoop(); });
}

void RemoteBlob::BackgroundLoop() {
  int failures = 0;
  for (size_t k = 0;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Demand reads first; a failure waits longer each time (the registry may be away).
      const auto pause =
          std::chrono::milliseconds(failures == 0 ? 0 : 500 << std::min(failures, 6));
      fetched_.wait_for(lock, pause, [&] { return stopping_; });
      for (;;) {
        const auto since = std::chrono::nanoseconds(Now() - last_demand_ns.load());
        if (stopping_ || (demand_ == 0 && since >= kQuiet)) break;
        fetched_.wait_for(lock, std::chrono::milliseconds(100));
      }
      if (stopping_ || missing_ == 0 || failed_) return;
      while (k < present_.size() && present_[k]) ++k;
      if (k == present_.size()) {
        k = 0;  // the chunks that failed before
        continue;
      }
    }
    // A few chunks per request; EnsureChunk then deals with chunk k if the run left it.
    Status s = FetchChunks(k, k + kBackgroundRun - 1, false);
    if (s.ok()) s = EnsureChunk(k, false);
    failures = s.ok() ? 0 : failures + 1;
    if (s.ok()) ++k;
  }
}

size_t RemoteBlob::chunks_present() const {
  std::lock_guard<std::mutex> lock(mu_);
  return present_.size() - missing_;
}

Status RemoteBlob::ReadAt(uint64_t offset, char* buf, size_t size) const {
  if (offset > size_ || size > size_ - offset) {
    return Status::Invalid(name_ + ": read past the end of the blob");
  }
  if (failed_) return Status::Corrupt(name_ + ": does not match its digest");
  if (size == 0) return Status::Ok();
  const size_t first = static_cast<size_t>(offset / chunk_size_);
  const size_t last = static_cast<size_t>((offset + size - 1) / chunk_size_);
  LAYERFS_RETURN_IF_ERROR(WillRead(offset, size));
  for (size_t k = first; k <= last; ++k) LAYERFS_RETURN_IF_ERROR(EnsureChunk(k, true));
  return PreadFully(data_.get(), buf, size, offset, name_);
}

Status RemoteBlob::EnsureChunk(size_t k, bool demand) const {
  std::unique_lock<std::mutex> lock(mu_);
  demand_ += demand;
  for (;;) {
    if (present_[k]) {
      demand_ -= demand;
      return Status::Ok();
    }
    if (fetching_.count(k) == 0) break;
    fetched_.wait(lock);  // another reader fetches it
  }
  fetching_.insert(k);
  const bool recorded = !recorded_.empty() && recorded_[k];
  lock.unlock();
  if (demand) last_demand_ns = Now();
  Status s = FetchChunk(k, recorded);
  if (demand) last_demand_ns = Now();
  lock.lock();
  fetching_.erase(k);
  demand_ -= demand;
  if (s.ok() && !present_[k]) {
    present_[k] = 1;
    --missing_;
  }
  fetched_.notify_all();
  const bool complete = s.ok() && missing_ == 0;
  lock.unlock();
  if (complete) MaybeComplete();
  return s;
}

Status RemoteBlob::FetchChunk(size_t k, bool recorded) const {
  const uint64_t start = k * chunk_size_;
  const uint64_t length = std::min(chunk_size_, size_ - start);
  const std::string_view want(chunk_digests_.data() + k * Digest::kSize, Digest::kSize);
  if (recorded) {  // fetched by an earlier mount: used if it is still intact
    std::string bytes(static_cast<size_t>(length), '\0');
    if (PreadFully(data_.get(), bytes.data(), bytes.size(), start, name_).ok()) {
      Digest got = Sha256::Of(bytes.data(), bytes.size());
      if (std::memcmp(got.bytes().data(), want.data(), Digest::kSize) == 0) return Status::Ok();
    }
    LogInfo("{}: chunk {} in the cache is damaged; fetching it again", name_, k);
  }
  Status last = Status::Ok();
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto bytes = client_->FetchRange(digest_, start, length);
    if (!bytes.ok()) return bytes.status();
    LAYERFS_ASSIGN_OR_RETURN(bool stored, StoreChunk(k, *bytes));
    if (stored) return Status::Ok();
    last = Status::Corrupt(name_ + ": chunk " + std::to_string(k) + " (bytes " +
                           std::to_string(start) + "+" + std::to_string(length) +
                           ") does not match its published digest");
    LogError("{}{}", last.message(), attempt == 0 ? "; fetching it again" : "");
  }
  return last;
}

Result<bool> RemoteBlob::StoreChunk(size_t k, std::string_view bytes) const {
  const uint64_t start = k * chunk_size_;
  const std::string_view want(chunk_digests_.data() + k * Digest::kSize, Digest::kSize);
  Digest got = Sha256::Of(bytes.data(), bytes.size());
  if (std::memcmp(got.bytes().data(), want.data(), Digest::kSize) != 0) return false;
  if (int err = PwriteFully(data_.get(), bytes.data(), bytes.size(), start); err != 0) {
    return Status::FromErrno(err, partial_path_);
  }
  const uint8_t one = 1;
  if (int err = PwriteFully(present_fd_.get(), &one, 1, k); err != 0) {
    return Status::FromErrno(err, present_path_);
  }
  return true;
}

Status RemoteBlob::WillRead(uint64_t offset, uint64_t length) const {
  if (offset >= size_ || length == 0 || failed_) return Status::Ok();
  length = std::min(length, size_ - offset);
  const size_t first = static_cast<size_t>(offset / chunk_size_);
  const size_t last = static_cast<size_t>((offset + length - 1) / chunk_size_);
  if (first == last) return Status::Ok();  // ReadAt fetches a single chunk as well
  return FetchChunks(first, last, true);
}

Status RemoteBlob::FetchChunks(size_t first, size_t last, bool demand) const {
  // Claim the chunks no one has or fetches. Those an earlier mount recorded are left to
  // EnsureChunk, which checks them where they are.
  std::vector<size_t> mine;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t k = first; k <= last && k < present_.size(); ++k) {
      const bool recorded = !recorded_.empty() && recorded_[k];
      if (!present_[k] && !recorded && fetching_.insert(k).second) mine.push_back(k);
    }
    if (mine.empty()) return Status::Ok();
    demand_ += demand;
  }
  if (demand) last_demand_ns = Now();
  Status status = Status::Ok();
  std::vector<size_t> stored;
  for (size_t i = 0; i < mine.size() && status.ok();) {
    size_t j = i + 1;  // mine[i..j) are consecutive
    while (j < mine.size() && mine[j] == mine[j - 1] + 1) ++j;
    const uint64_t start = mine[i] * chunk_size_;
    const uint64_t end = std::min<uint64_t>((mine[j - 1] + 1) * chunk_size_, size_);
    auto bytes = client_->FetchRange(digest_, start, end - start);
    if (!bytes.ok()) {
      status = bytes.status();
      break;
    }
    for (size_t m = i; m < j; ++m) {
      const uint64_t at = mine[m] * chunk_size_ - start;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_size_, end - start - at));
      // A chunk that does not match is left missing: the read's EnsureChunk fetches it again
      // on its own and says so.
      auto s = StoreChunk(mine[m], std::string_view(*bytes).substr(at, n));
      if (!s.ok()) {
        status = s.status();
        break;
      }
      if (*s) stored.push_back(mine[m]);
    }
    i = j;
  }
  if (demand) last_demand_ns = Now();
  bool complete;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t k : mine) fetching_.erase(k);
    for (size_t k : stored) {
      if (!present_[k]) {
        present_[k] = 1;
        --missing_;
      }
    }
    demand_ -= demand;
    complete = !stored.empty() && missing_ == 0;
  }
  fetched_.notify_all();
  if (complete) MaybeComplete();
  return status;
}

void RemoteBlob::MaybeComplete() const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (completed_) return;
    completed_ = true;
  }
  // Every chunk is here: the blob as a whole must be the one the manifest names.
  Sha256 hash;
  std::string buf(1 << 20, '\0');
  for (uint64_t at = 0; at < size_; at += buf.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size_ - at));
    Status s = PreadFully(data_.get(), buf.data(), n, at, name_);
    if (!s.ok()) {
      LogError("{}", s.message());
      return;
    }
    hash.Update(buf.data(), n);
  }
  Digest got = hash.Finish();
  if (got != digest_) {
    failed_ = true;
    LogError("{}: the blob fetched whole has digest {}; its reads fail with EIO from now on", name_,
             got.str());
    return;
  }
  ::fsync(data_.get());
  if (::rename(partial_path_.c_str(), final_path_.c_str()) == 0) ::unlink(present_path_.c_str());
}

}  // namespace layerfs
