#include "registry/registry_image.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "base/path.h"
#include "blob/sha256.h"
#include "registry/index_artifact.h"
#include "registry/remote_blob.h"

namespace layerfs {
namespace {

constexpr std::string_view kBlobPrefix = "blobs/sha256/";

class RegistrySource : public ImageSource {
 public:
  // Deferred: layer blobs are fetched only when FetchLayers() says so; until then Open() of one
  // gives a range of its size that holds no bytes.
  RegistrySource(std::shared_ptr<RegistryClient> client, const ImageName& name, FetchedManifest top,
                 std::string cache_dir, bool deferred)
      : client_(std::move(client)),
        location_(name.str()),
        cache_dir_(std::move(cache_dir)),
        deferred_(deferred) {
    nlohmann::json top_json = nlohmann::json::parse(top.body, nullptr, false);
    std::string type = top.media_type;
    if (type.empty() || type == "application/json" || type == "text/plain") {
      type = top_json.is_object() && top_json.contains("mediaType") &&
                     top_json["mediaType"].is_string()
                 ? top_json["mediaType"].get<std::string>()
             : top_json.is_object() && top_json.contains("manifests")
                 ? "application/vnd.oci.image.index.v1+json"
                 : "application/vnd.oci.image.manifest.v1+json";
    }
    nlohmann::json desc = {
        {"mediaType", type}, {"digest", top.digest.str()}, {"size", top.body.size()}};
    if (!name.tag.empty()) desc["annotations"] = {{"org.opencontainers.image.ref.name", name.tag}};
    index_json_ = nlohmann::json{{"schemaVersion", 2}, {"manifests", {desc}}}.dump();
    Learn(top_json);
    fetched_[top.digest.hex()] = std::move(top.body);
  }

  Result<std::string> ReadSmall(std::string_view path, size_t max_size) const override {
    if (path == "oci-layout") return std::string(R"({"imageLayoutVersion":"1.0.0"})");
    if (path == "index.json") return index_json_;
    LAYERFS_ASSIGN_OR_RETURN(Digest digest, BlobDigest(path));
    bool manifest;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = fetched_.find(digest.hex());
      if (it != fetched_.end()) return it->second;
      manifest = manifests_.count(digest.hex()) > 0;
    }
    if (!manifest) return client_->GetBlob(digest, max_size);
    LAYERFS_ASSIGN_OR_RETURN(FetchedManifest m, client_->GetManifest(digest.str()));
    std::lock_guard<std::mutex> lock(mu_);
    Learn(nlohmann::json::parse(m.body, nullptr, false));
    return std::move(m.body);
  }

  Result<BlobRange> Open(std::string_view path) const override {
    LAYERFS_ASSIGN_OR_RETURN(Digest digest, BlobDigest(path));
    const std::string file = FetchedBlobPath(cache_dir_, digest);
    std::shared_future<Status> fetching;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = fetches_.find(digest.hex());
      if (it != fetches_.end()) fetching = it->second;
      auto size = sizes_.find(digest.hex());
      if (deferred_ && !fetching.valid() && size != sizes_.end() &&
          ::access(file.c_str(), F_OK) != 0) {
        return Placeholder(digest, size->second);
      }
    }
    if (fetching.valid()) LAYERFS_RETURN_IF_ERROR(fetching.get());
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      if (errno != ENOENT) return Status::FromErrno(errno, file);
      LAYERFS_RETURN_IF_ERROR(Fetch(digest, file));
      fd.reset(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (!fd) return Status::FromErrno(errno, file);
    }
    return WholeFileRange(std::move(fd), file);
  }

  ~RegistrySource() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      queue_.clear();
    }
    for (std::thread& t : workers_) t.join();
  }

  bool Exists(std::string_view) const override { return true; }

  std::string Describe(std::string_view path) const override {
    if (path.rfind(kBlobPrefix, 0) == 0) {
      return client_->name() + "@sha256:" + std::string(path.substr(kBlobPrefix.size()));
    }
    return location_;
  }

  const std::string& location() const override { return location_; }

 private:
  Result<Digest> BlobDigest(std::string_view path) const {
    if (path.rfind(kBlobPrefix, 0) != 0) {
      return Status::NotFound(location_ + ": no " + Printable(std::string(path)) +
                              " in a registry image");
    }
    return Digest::ParseHex(path.substr(kBlobPrefix.size()));
  }

  // The manifests an index lists are fetched from the registry's manifest endpoint; the layers
  // an image manifest lists start being fetched, a few at a time, before they are opened.
  // REQUIRES: mu_ held, or the constructor.
  void Learn(const nlohmann::json& doc) const {
    auto digests = [&](const char* key) {
      std::vector<Digest> out;
      if (!doc.is_object() || !doc.contains(key) || !doc[key].is_array()) return out;
      for (const auto& m : doc[key]) {
        if (!m.is_object() || !m.contains("digest") || !m["digest"].is_string()) continue;
        auto d = Digest::Parse(m["digest"].get<std::string>());
        if (d.ok()) out.push_back(*d);
      }
      return out;
    };
    for (const Digest& d : digests("manifests")) manifests_.insert(d.hex());
    if (doc.is_object() && doc.contains("layers") && doc["layers"].is_array()) {
      for (const auto& l : doc["layers"]) {
        if (!l.is_object() || !l.contains("digest") || !l["digest"].is_string() ||
            !l.contains("size") || !l["size"].is_number_unsigned()) {
          continue;
        }
        auto d = Digest::Parse(l["digest"].get<std::string>());
        if (d.ok()) sizes_[d->hex()] = l["size"].get<uint64_t>();
      }
    }
    if (!deferred_) StartFetches(digests("layers"));
  }

 public:
  // Starts fetching these layer blobs in the background (those not in the cache yet).
  void FetchLayers(const std::vector<Digest>& layers) const {
    std::lock_guard<std::mutex> lock(mu_);
    StartFetches(layers);
  }

  const std::shared_ptr<RegistryClient>& client() const { return client_; }

  // Joins the fetching threads, whose work is done once every layer is opened: a daemon forks
  // after the image is open, and a thread of the parent cannot be joined in the child.
  void JoinFetchers() const {
    std::vector<std::thread> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done.swap(workers_);
    }
    for (std::thread& t : done) t.join();
  }

 private:
  // A range of `size` bytes that holds none: reading it fails (/dev/null has no bytes).
  Result<BlobRange> Placeholder(const Digest& digest, uint64_t size) const {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd) return Status::FromErrno(errno, "/dev/null");
    BlobRange r;
    r.file = std::make_shared<UniqueFd>(std::move(fd));
    r.length = size;
    r.name = client_->name() + "@" + digest.str();
    return r;
  }

  // REQUIRES: mu_ held, or the constructor.
  void StartFetches(const std::vector<Digest>& layers) const {
    for (const Digest& d : layers) {
      const std::string file = FetchedBlobPath(cache_dir_, d);
      if (fetches_.count(d.hex()) > 0 || ::access(file.c_str(), F_OK) == 0) continue;
      auto done = std::make_shared<std::promise<Status>>();
      fetches_[d.hex()] = done->get_future().share();
      queue_.push_back({d, done});
      if (running_ < kFetchesAtOnce) {
        ++running_;
        workers_.emplace_back([this] { FetchLoop(); });
      }
    }
  }

  void FetchLoop() const {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_ && !queue_.empty()) {
      Queued job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job.done->set_value(Fetch(job.digest, FetchedBlobPath(cache_dir_, job.digest)));
      lock.lock();
    }
    --running_;
  }

  // Fetches a blob into the cache: a temporary file, renamed to `file` once its digest checks.
  Status Fetch(const Digest& digest, const std::string& file) const {
    LAYERFS_RETURN_IF_ERROR(MakeDirs(cache_dir_ + "/blobs/sha256").WithContext("cache directory"));
    LAYERFS_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(file, 0444));
    Sha256 hash;
    uint64_t size = 0;
    LogInfo("{}: fetching blob {}", client_->name(), digest.str());
    auto sink = [&](const char* data, size_t n) -> Status {
      if (stopping_) return Status::Error(ECANCELED, "fetch of " + digest.str() + " cancelled");
      hash.Update(data, n);
      size += n;
      return out.Write(data, n);
    };
    auto restart = [&] {
      hash.Reset();
      size = 0;
      (void)::ftruncate(out.fd(), 0);
      (void)::lseek(out.fd(), 0, SEEK_SET);
    };
    LAYERFS_RETURN_IF_ERROR(client_->FetchBlob(digest, sink, restart));
    Digest got = hash.Finish();
    if (got != digest) {
      return Status::Corrupt(client_->name() + ": blob " + digest.str() + " as sent (" +
                             std::to_string(size) + " bytes) has digest " + got.str());
    }
    return out.Commit();
  }

  std::shared_ptr<RegistryClient> client_;
  std::string location_;
  std::string cache_dir_;
  bool deferred_;
  mutable std::map<std::string, uint64_t> sizes_;  // of the layers manifests list
  std::string index_json_;
  mutable std::mutex mu_;
  mutable std::set<std::string> manifests_;  // hex digests of the manifests indexes list
  mutable std::map<std::string, std::string> fetched_;

  // Layer blobs fetched in the background.
  static constexpr size_t kFetchesAtOnce = 3;
  struct Queued {
    Digest digest;
    std::shared_ptr<std::promise<Status>> done;
  };
  mutable std::map<std::string, std::shared_future<Status>> fetches_;
  mutable std::deque<Queued> queue_;
  mutable std::vector<std::thread> workers_;
  mutable size_t running_ = 0;  // workers not yet done with the queue
  mutable std::atomic<bool> stopping_{false};
};

}  // namespace

std::string FetchedBlobPath(const std::string& cache_dir, const Digest& digest) {
  return cache_dir + "/blobs/sha256/" + digest.hex();
}

Result<ImageSpec> LoadRegistryImage(const ImageName& name, const LoadOptions& options,
                                    const RegistryOptions& registry, const std::string& cache_dir) {
  LAYERFS_ASSIGN_OR_RETURN(std::unique_ptr<RegistryClient> connected,
                           RegistryClient::Connect(name, registry));
  std::shared_ptr<RegistryClient> client = std::move(connected);
  LAYERFS_ASSIGN_OR_RETURN(FetchedManifest top, client->GetManifest(name.reference()));
  auto source =
      std::make_unique<RegistrySource>(client, name, std::move(top), cache_dir, registry.lazy);
  const RegistrySource* registry_source = source.get();
  LAYERFS_ASSIGN_OR_RETURN(ImageSpec spec, LoadOciImage(std::move(source), options, "registry"));
  std::map<std::string, PublishedLayer> published;
  if (registry.lazy || registry.find_indexes) {
    published = FindPublishedIndexes(*client, spec, cache_dir);
    for (const LayerSpec& layer : spec.layers) {
      spec.published_indexes += published.count(layer.blob_digest->hex());
    }
  }
  if (!registry.lazy) {
    registry_source->JoinFetchers();
    return spec;
  }

  // Layers with a published index are read lazily; the others are fetched whole now.
  std::vector<Digest> whole;
  std::vector<std::shared_ptr<RemoteBlob>> lazy;
  for (LayerSpec& layer : spec.layers) {
    const Digest& d = *layer.blob_digest;
    auto it = published.find(d.hex());
    if (it == published.end() || ::access(FetchedBlobPath(cache_dir, d).c_str(), F_OK) == 0) {
      whole.push_back(d);
      continue;
    }
    auto remote = RemoteBlob::Open(client, cache_dir, d, layer.blob.length, it->second.chunk_size,
                                   std::move(it->second.chunk_digests));
    if (!remote.ok()) {
      LogWarning("{}: {}; fetching it whole", layer.label, remote.status().message());
      whole.push_back(d);
      continue;
    }
    lazy.push_back(*remote);
    layer.remote = std::move(remote).value();
    layer.published_index = it->second.index_path;
  }
  if (!lazy.empty()) {
    spec.start_background = [lazy] {
      for (const auto& blob : lazy) blob->StartBackground();
    };
  }
  registry_source->FetchLayers(whole);
  for (LayerSpec& layer : spec.layers) {
    if (layer.remote) continue;
    auto blob = spec.source->Open(layer.path);
    if (!blob.ok()) return blob.status().WithContext(layer.label);
    layer.blob = std::move(blob).value();
  }
  registry_source->JoinFetchers();
  return spec;
}

}  // namespace layerfs
