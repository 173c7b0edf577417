#include "index/layer_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>

#include "base/file_util.h"
#include "base/hash.h"
#include "base/log.h"
#include "blob/checkpoints.h"
#include "blob/compressed_source.h"
#include "blob/sha256.h"
#include "index/index_builder.h"
#include "tar/tar_reader.h"

namespace layerfs {
namespace {

struct Stamp {
  char magic[8];
  uint32_t version;
  uint32_t reserved;
  uint8_t digest[32];
  uint64_t offset;
  uint64_t length;
  uint64_t dev;
  uint64_t ino;
  uint64_t size;
  int64_t mtime_ns;
  int64_t ctime_ns;
};
constexpr char kStampMagic[8] = {'L', 'F', 'S', 'S', 'T', 'A', 'M', 'P'};

Stamp MakeStamp(const Digest& digest, const struct stat& st, uint64_t offset, uint64_t length) {
  Stamp s;
  std::memset(&s, 0, sizeof(s));
  std::memcpy(s.magic, kStampMagic, sizeof(s.magic));
  s.version = 1;
  std::memcpy(s.digest, digest.bytes().data(), sizeof(s.digest));
  FileIdentity id = FileIdentity::Of(st);
  s.offset = offset;
  s.length = length;
  s.dev = id.dev;
  s.ino = id.ino;
  s.size = id.size;
  s.mtime_ns = id.mtime_ns;
  s.ctime_ns = id.ctime_ns;
  return s;
}

int64_t NowNs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// A zstd layer is served in place when no span between its checkpoints (frame starts) is longer
// than this; a layer of one large frame gets a decompressed copy instead.
constexpr uint64_t kZstdLongestSpan = 16u << 20;

std::string SpanText(uint64_t span) {
  if (span >= (1u << 20) && span % (1u << 20) == 0) return std::to_string(span >> 20) + " MiB";
  return std::to_string(span >> 10) + " KiB";
}

std::string MismatchMessage(const std::string& what, const Digest& expected, const Digest& got) {
  return what + " does not match its digest: the image says " + expected.str() +
         ", the content is " + got.str();
}

}  // namespace

std::string LayerStore::DefaultDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/layerfs";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') return std::string(home) + "/.cache/layerfs";
  return "/var/tmp/layerfs-cache-" + std::to_string(::getuid());
}

std::string LayerStore::IndexPath(const Digest& diff_id) const {
  return dir_ + "/index/sha256/" + diff_id.hex() + ".idx";
}

std::string LayerStore::CopyPath(const Digest& diff_id) const {
  return dir_ + "/blobs/sha256/" + diff_id.hex() + ".tar";
}

std::string LayerStore::StampPath(const Digest& digest, const struct stat& st, uint64_t offset,
                                  uint64_t length) const {
  uint64_t key[4] = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), offset,
                     length};
  uint64_t h = Hash64Concat(digest.bytes().data(), digest.bytes().size(), key, sizeof(key));
  char name[17];
  snprintf(name, sizeof(name), "%016llx", static_cast<unsigned long long>(h));
  return dir_ + "/verified/" + name;
}

bool LayerStore::StampValid(const Digest& digest, int fd, uint64_t offset, uint64_t length) const {
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;
  std::string path = StampPath(digest, st, offset, length);
  UniqueFd stamp_fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!stamp_fd) return false;
  Stamp want = MakeStamp(digest, st, offset, length);
  Stamp got;
  ssize_t n = ::pread(stamp_fd.get(), &got, sizeof(got), 0);
  return n == static_cast<ssize_t>(sizeof(got)) && std::memcmp(&want, &got, sizeof(got)) == 0;
}

Status LayerStore::WriteStamp(const Digest& digest, int fd, uint64_t offset, uint64_t length,
                              int64_t verified_since) const {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "stat");
  if (verified_since != 0) {
    FileIdentity id = FileIdentity::Of(st);
    if (std::max(id.mtime_ns, id.ctime_ns) + kRacyStampNs > verified_since) return Status::Ok();
  }
  LAYERFS_RETURN_IF_ERROR(MakeDirs(dir_ + "/verified"));
  Stamp s = MakeStamp(digest, st, offset, length);
  return WriteFileAtomic(StampPath(digest, st, offset, length),
                         std::string_view(reinterpret_cast<const char*>(&s), sizeof(s)));
}

bool MayServeInPlace(const LayerSpec& spec) {
  return spec.compression != Compression::kNone && spec.blob_digest.has_value();
}

Result<Layer> LayerStore::InPlaceLayer(const LayerSpec& spec, LayerIndex index) const {
  Layer layer;
  layer.label = spec.label;
  layer.position = spec.index;
  LAYERFS_ASSIGN_OR_RETURN(std::shared_ptr<FileSource> blob, FileSource::Of(spec.blob));
  const uint64_t tar_size = index.tar_size();
  layer.served = (index.codec() == kIndexCodecGzip ? "checkpoints " : "zstd frames ") +
                 std::to_string(index.checkpoint_count()) + " (span " + SpanText(index.span()) +
                 ")";
  layer.data = std::make_shared<CompressedSource>(std::move(blob), index.checkpoints(), tar_size,
                                                  span_cache_, inflater_);
  layer.index = std::move(index);
  return layer;
}

Result<std::optional<Layer>> LayerStore::InPlaceFromCache(const LayerSpec& spec) const {
  const Digest& blob_digest = *spec.blob_digest;
  auto index = LayerIndex::Open(IndexPath(blob_digest));
  if (!index.ok()) {
    if (index.status().code() != ENOENT) {
      LogInfo("{}: cached index unusable ({}); rebuilding", spec.label, index.status().message());
    }
    return std::optional<Layer>();
  }
  const IndexCodec want =
      spec.compression == Compression::kGzip ? kIndexCodecGzip : kIndexCodecZstd;
  if (index->codec() != want || index->diff_id() != *spec.diff_id ||
      index->blob_digest() != blob_digest || index->blob_size() != spec.blob.length ||
      (span_rebuild_ && index->span() != EffectiveSpan(span_))) {
    return std::optional<Layer>();
  }
  LAYERFS_ASSIGN_OR_RETURN(bool verified_now, VerifyBlob(spec, blob_digest));
  LAYERFS_ASSIGN_OR_RETURN(Layer layer, InPlaceLayer(spec, std::move(index).value()));
  layer.verified_now = verified_now;
  return std::optional<Layer>(std::move(layer));
}

Result<bool> LayerStore::VerifyBlob(const LayerSpec& spec, const Digest& digest) const {
  if (StampValid(digest, spec.blob.fd(), spec.blob.offset, spec.blob.length)) return false;
  // The blob is not the one verified before (copied, touched, replaced): check it again.
  const int64_t since = NowNs();
  LAYERFS_ASSIGN_OR_RETURN(
      Digest got, HashRange(spec.blob.fd(), spec.blob.offset, spec.blob.length, spec.blob.name));
  if (got != digest) {
    return Status::Corrupt(spec.label + ": " + MismatchMessage(spec.blob.name, digest, got));
  }
  Status s = WriteStamp(digest, spec.blob.fd(), spec.blob.offset, spec.blob.length, since);
  if (!s.ok()) LogWarning("{}: cannot record the verification: {}", spec.label, s.message());
  return true;
}

void LayerStore::RemoveOutdated(const Digest& diff_id) const {
  const std::string index_path = IndexPath(diff_id);
  auto old = LayerIndex::Open(index_path);
  if (old.ok() || old.status().code() == ENOENT) return;  // current (or none): its copy is in use
  ::unlink(CopyPath(diff_id).c_str());
  ::unlink(index_path.c_str());
}

Result<Layer> LayerStore::RemoteLayer(const LayerSpec& spec) const {
  auto opened = LayerIndex::Open(spec.published_index);
  if (!opened.ok()) return opened.status().WithContext(spec.label + ": published index");
  LayerIndex index = std::move(opened).value();
  const IndexCodec want = spec.compression == Compression::kGzip   ? kIndexCodecGzip
                          : spec.compression == Compression::kZstd ? kIndexCodecZstd
                                                                   : kIndexCodecNone;
  const uint64_t size = spec.remote->size();
  const bool fits = index.codec() == want && index.diff_id() == *spec.diff_id &&
                    (want == kIndexCodecNone
                         ? index.tar_size() == size
                         : spec.blob_digest && index.blob_digest() == *spec.blob_digest &&
                               index.blob_size() == size);
  if (!fits) {
    return Status::Corrupt(spec.label + ": the index published for it describes another blob");
  }
  Layer layer;
  layer.label = spec.label;
  layer.position = spec.index;
  if (want == kIndexCodecNone) {
    layer.served = "lazily, in place";
    layer.data = spec.remote;
  } else {
    layer.served = std::string("lazily, ") +
                   (want == kIndexCodecGzip ? "checkpoints " : "zstd frames ") +
                   std::to_string(index.checkpoint_count()) + " (span " +
                   SpanText(index.span()) + ")";
    layer.data = std::make_shared<CompressedSource>(spec.remote, index.checkpoints(),
                                                    index.tar_size(), span_cache_, inflater_);
  }
  layer.index = std::move(index);
  return layer;
}

Result<Layer> LayerStore::Load(const LayerSpec& spec) const {
  if (!spec.diff_id) return Status::Invalid(spec.label + ": the image config gives no diff_id");
  if (spec.remote) return RemoteLayer(spec);
  LAYERFS_ASSIGN_OR_RETURN(std::optional<Layer> cached, FromCache(spec, true));
  if (cached) return std::move(*cached);
  return Build(spec);
}

Result<std::optional<Layer>> LayerStore::FromCache(const LayerSpec& spec, bool log) const {
  const Digest& key = *spec.diff_id;
  if (MayServeInPlace(spec)) {
    LAYERFS_ASSIGN_OR_RETURN(std::optional<Layer> in_place, InPlaceFromCache(spec));
    if (in_place || spec.compression == Compression::kGzip) return in_place;
  }
  Layer layer;
  layer.label = spec.label;
  layer.position = spec.index;
  layer.served = spec.compression == Compression::kNone ? "in place" : "decompressed copy";

  auto index = LayerIndex::Open(IndexPath(key));
  if (index.ok() && index->diff_id() == key && index->codec() == kIndexCodecNone) {
    if (spec.compression == Compression::kNone) {
      if (index->tar_size() == spec.blob.length) {
        if (spec.blob_digest && *spec.blob_digest != key) {
          return Status::Corrupt(spec.label + ": " + spec.blob.name +
                                 ": an uncompressed layer whose manifest digest differs from "
                                 "its config diff_id");
        }
        layer.index = std::move(index).value();
        LAYERFS_ASSIGN_OR_RETURN(layer.verified_now, VerifyBlob(spec, key));
        LAYERFS_ASSIGN_OR_RETURN(layer.data, FileSource::Of(spec.blob));
        return std::optional<Layer>(std::move(layer));
      }
    } else {
      std::string copy_path = CopyPath(key);
      UniqueFd copy(::open(copy_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      struct stat st;
      if (copy && ::fstat(copy.get(), &st) == 0 && S_ISREG(st.st_mode) &&
          static_cast<uint64_t>(st.st_size) == index->tar_size() &&
          StampValid(key, copy.get(), 0, index->tar_size())) {
        layer.index = std::move(index).value();
        LAYERFS_ASSIGN_OR_RETURN(layer.data,
                                 FileSource::Open(std::make_shared<UniqueFd>(std::move(copy)), 0,
                                                  layer.index.tar_size(), copy_path));
        return std::optional<Layer>(std::move(layer));
      }
    }
  } else if (log && !index.ok() && index.status().code() != ENOENT) {
    LogInfo("{}: cached index unusable ({}); rebuilding", spec.label, index.status().message());
  }
  return std::optional<Layer>();
}

Result<Layer> LayerStore::Build(const LayerSpec& spec) const {
  const Digest& key = *spec.diff_id;
  const bool compressed = spec.compression != Compression::kNone;
  const bool in_place = MayServeInPlace(spec);
  for (const char* sub : {"/index/sha256", "/verified"}) {
    Status s = MakeDirs(dir_ + sub);
    if (!s.ok()) return s.WithContext("cache directory");
  }
  LAYERFS_RETURN_IF_ERROR(CheckWritableDir(dir_ + "/index/sha256").WithContext("cache directory"));

  // One builder per layer at a time, across threads and processes: a second one waits, then
  // takes what the first wrote. Without the lock, its copy renamed over the first one's would
  // change the ctime of the file the first process serves, which then fails its reads with EIO.
  // A build that fails removes its lock file (the cache keeps nothing named after a bad layer),
  // so a waiter that then gets the lock checks that its file is still the one in place.
  LAYERFS_RETURN_IF_ERROR(MakeDirs(dir_ + "/locks").WithContext("cache directory"));
  const std::string lock_path = dir_ + "/locks/" + (in_place ? *spec.blob_digest : key).hex();
  UniqueFd lock;
  for (;;) {
    lock.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!lock) return Status::FromErrno(errno, lock_path);
    while (::flock(lock.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return Status::FromErrno(errno, "lock " + lock_path);
    }
    struct stat held, named;
    if (::fstat(lock.get(), &held) == 0 && ::stat(lock_path.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      break;
    }
  }
  struct RemoveUnlessKept {
    const std::string& path;
    bool keep = false;
    ~RemoveUnlessKept() {
      if (!keep) ::unlink(path.c_str());
    }
  } lock_file{lock_path};
  LAYERFS_ASSIGN_OR_RETURN(std::optional<Layer> built_meanwhile, FromCache(spec, false));
  if (built_meanwhile) {
    lock_file.keep = true;
    return std::move(*built_meanwhile);
  }

  // gzip in place needs no copy; zstd learns only at the end whether its frames allow it.
  std::optional<AtomicFile> copy;
  if (compressed && !(in_place && spec.compression == Compression::kGzip)) {
    Status s = MakeDirs(dir_ + "/blobs/sha256");
    if (!s.ok()) return s.WithContext("cache directory");
    LAYERFS_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(CopyPath(key), 0444));
    copy.emplace(std::move(f));
  }

  Sha256 blob_hash;
  Sha256 tar_hash;
  IndexBuilder builder;
  CheckpointList checkpoints;
  TarReadOptions options;
  options.compression = spec.compression;
  options.blob_hash = &blob_hash;
  options.tar_hash = compressed ? &tar_hash : &blob_hash;
  options.copy_fd = copy ? copy->fd() : -1;
  options.checkpoints = in_place ? &checkpoints : nullptr;
  options.span = span_;
  if (progress_) {
    options.progress = [&](uint64_t done) { progress_(spec, done, spec.blob.length); };
  }
  const int64_t since = NowNs();
  auto stats = ReadTar(spec.blob.fd(), spec.blob.offset, spec.blob.length, spec.blob.name, options,
                       [&](const TarEntry& e) { return builder.Add(e); });
  if (!stats.ok()) return stats.status().WithContext(spec.label);

  Digest blob_digest = blob_hash.Finish();
  Digest tar_digest = compressed ? tar_hash.Finish() : blob_digest;
  if (spec.blob_digest && blob_digest != *spec.blob_digest) {
    return Status::Corrupt(spec.label + ": " +
                           MismatchMessage(spec.blob.name, *spec.blob_digest, blob_digest));
  }
  if (tar_digest != key) {
    return Status::Corrupt(
        spec.label + ": " +
        MismatchMessage(spec.blob.name + (compressed ? " (uncompressed)" : ""), key, tar_digest));
  }
  const bool serve_in_place =
      in_place && (spec.compression == Compression::kGzip ||
                   checkpoints.LongestSpan(stats->tar_bytes) <= kZstdLongestSpan);

  if (serve_in_place) {
    IndexBuilder::InPlace blob{&checkpoints, blob_digest, spec.blob.length};
    auto bytes = builder.Finish(key, stats->tar_bytes, &blob);
    if (!bytes.ok()) return bytes.status().WithContext(spec.label);
    copy.reset();  // not needed: its temporary file goes
    std::string index_path = IndexPath(blob_digest);
    LAYERFS_RETURN_IF_ERROR(WriteFileAtomic(index_path, *bytes));
    LAYERFS_RETURN_IF_ERROR(
        WriteStamp(blob_digest, spec.blob.fd(), spec.blob.offset, spec.blob.length, since));
    LAYERFS_ASSIGN_OR_RETURN(LayerIndex index, LayerIndex::Open(index_path));
    LAYERFS_ASSIGN_OR_RETURN(Layer layer, InPlaceLayer(spec, std::move(index)));
    RemoveOutdated(key);
    layer.indexed_now = true;
    layer.verified_now = true;
    layer.warnings = builder.warnings();
    lock_file.keep = true;
    return layer;
  }

  auto bytes = builder.Finish(key, stats->tar_bytes);
  if (!bytes.ok()) return bytes.status().WithContext(spec.label);
  Layer layer;
  layer.label = spec.label;
  layer.position = spec.index;
  layer.indexed_now = true;
  layer.verified_now = true;
  layer.warnings = builder.warnings();
  layer.served = compressed ? "decompressed copy" : "in place";
  if (compressed) {
    LAYERFS_RETURN_IF_ERROR(copy->Commit());
    auto file = std::make_shared<UniqueFd>(copy->ReleaseFd());
    LAYERFS_RETURN_IF_ERROR(WriteStamp(key, file->get(), 0, stats->tar_bytes, 0));
    LAYERFS_ASSIGN_OR_RETURN(layer.data,
                             FileSource::Open(std::move(file), 0, stats->tar_bytes, CopyPath(key)));
  } else {
    LAYERFS_ASSIGN_OR_RETURN(layer.data, FileSource::Of(spec.blob));
  }
  std::string index_path = IndexPath(key);
  LAYERFS_RETURN_IF_ERROR(WriteFileAtomic(index_path, *bytes));
  if (!compressed) {
    LAYERFS_RETURN_IF_ERROR(
        WriteStamp(key, spec.blob.fd(), spec.blob.offset, spec.blob.length, since));
  }
  LAYERFS_ASSIGN_OR_RETURN(layer.index, LayerIndex::Open(index_path));
  lock_file.keep = true;
  return layer;
}

Result<std::vector<Layer>> LayerStore::LoadAll(const std::vector<LayerSpec>& specs,
                                               unsigned threads, StoreStats* stats) const {
  const size_t n = specs.size();
  std::vector<std::optional<Result<Layer>>> results(n);
  // Largest blobs first, so that the last one to finish is a small one.
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return specs[a].blob.length > specs[b].blob.length; });
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<size_t>(threads, n));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&] {
    for (;;) {
      size_t k = next.fetch_add(1);
      if (k >= n || failed.load()) return;
      size_t i = order[k];
      results[i].emplace(Load(specs[i]));
      if (!results[i]->ok()) failed.store(true);
    }
  };
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  std::vector<Layer> layers;
  layers.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (results[i] && !results[i]->ok()) return results[i]->status();
  }
  for (size_t i = 0; i < n; ++i) {
    if (!results[i]) return Status::Error(ECANCELED, "layer loading stopped");
    Layer layer = std::move(*results[i]).value();
    if (stats != nullptr) {
      stats->layers_indexed += layer.indexed_now;
      stats->layers_verified += layer.verified_now;
      if (layer.verified_now) stats->bytes_read += specs[i].blob.length;
    }
    layers.push_back(std::move(layer));
  }
  return layers;
}

}  // namespace layerfs
