#include "index/layer_store.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "oci/manifest.h"
#include "tests/util/layer_checks.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

using testing::Content;

using testing::TarWriter;
using testing::TempDir;

ImageSpec MustLoadImage(const std::string& dir) {
  auto image = LoadImage(dir, LoadOptions{});
  INFO(image.status().message());
  REQUIRE(image.ok());
  return std::move(image).value();
}

Layer MustLoad(const LayerStore& store, const LayerSpec& spec) {
  auto layer = store.Load(spec);
  INFO(layer.status().message());
  REQUIRE(layer.ok());
  return std::move(layer).value();
}

// Files under `dir` whose names mark them as temporary (AtomicFile's ".tmp-" suffix).
std::vector<std::string> TempFilesUnder(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename().string().find(".tmp-") != std::string::npos) {
      found.push_back(it->path().string());
    }
  }
  return found;
}

std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_directory()) found.push_back(it->path().string());
  }
  return found;
}

ino_t InodeOfFd(int fd) {
  struct stat st;
  REQUIRE(::fstat(fd, &st) == 0);
  return st.st_ino;
}

ino_t InodeOfPath(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Overwrites one byte of `path` in place (same inode, same size). Waits first: on kernels whose
// file timestamps come from a coarse clock, a change in the same tick as the verification would
// leave mtime and ctime as the stamp recorded them.
void PatchByte(const std::string& path, uint64_t offset, char value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  REQUIRE(fd.valid());
  REQUIRE(::pwrite(fd.get(), &value, 1, static_cast<off_t>(offset)) == 1);
}

// A one-layer image and a cache beside it.
struct OneLayer {
  TempDir dir;
  std::string image = dir.Sub("image");
  std::string cache = dir.Sub("cache");
  std::string tar = TarWriter()
                        .Dir("etc")
                        .File("etc/os-release", "ID=layerfs\n")
                        .File("data.bin", "CONTENT-MARKER and the rest of the file")
                        .Finish();

  explicit OneLayer(const std::string& compression = "none") {
    testing::WriteOciLayout(image, {tar}, compression);
    testing::LetTimestampsSettle();
  }
  std::string BlobPath(const LayerSpec& spec) const { return image + "/" + spec.path; }
};

TEST_CASE("store: the first Load indexes, a second is served from the cache", "[store]") {
  OneLayer t;
  {
    ImageSpec image = MustLoadImage(t.image);
    REQUIRE(image.layers.size() == 1);
    LayerStore store(t.cache);
    Layer first = MustLoad(store, image.layers[0]);
    CHECK(first.indexed_now);
    CHECK(first.verified_now);
    CHECK(first.index.diff_id() == testing::Sha256Of(t.tar));
    CHECK(Content(first, "etc/os-release") == "ID=layerfs\n");
    CHECK(Exists(store.IndexPath(testing::Sha256Of(t.tar))));
  }
  // A new process: a fresh image and store on the same cache directory.
  ImageSpec image = MustLoadImage(t.image);
  LayerStore store(t.cache);
  Layer second = MustLoad(store, image.layers[0]);
  CHECK_FALSE(second.indexed_now);
  CHECK_FALSE(second.verified_now);
  CHECK(Content(second, "etc/os-release") == "ID=layerfs\n");
  CHECK(second.label == image.layers[0].label);
}

TEST_CASE("store: the progress callback hears about indexing, up to the whole blob, not hits",
          "[store]") {
  OneLayer t("gzip");
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  auto record = [&](const LayerSpec&, uint64_t done, uint64_t total) {
    calls.emplace_back(done, total);
  };
  {
    ImageSpec image = MustLoadImage(t.image);
    LayerStore store(t.cache);
    store.set_progress(record);
    MustLoad(store, image.layers[0]);
    REQUIRE_FALSE(calls.empty());
    CHECK(calls.back().first == image.layers[0].blob.length);
    for (auto [done, total] : calls) CHECK(done <= total);
    CHECK(calls.back().second == image.layers[0].blob.length);
  }
  calls.clear();
  ImageSpec image = MustLoadImage(t.image);
  LayerStore store(t.cache);
  store.set_progress(record);
  CHECK_FALSE(MustLoad(store, image.layers[0]).indexed_now);
  CHECK(calls.empty());
}

TEST_CASE("store: touching the blob makes the next Load verify it again, without re-indexing",
          "[store]") {
  OneLayer t;
  LayerStore store(t.cache);
  {
    ImageSpec image = MustLoadImage(t.image);
    MustLoad(store, image.layers[0]);
  }
  ImageSpec image = MustLoadImage(t.image);
  struct timeval times[2] = {{1000000000, 0}, {1000000000, 0}};
  REQUIRE(::utimes(t.BlobPath(image.layers[0]).c_str(), times) == 0);
  testing::LetTimestampsSettle();  // utimes sets the ctime to now
  Layer touched = MustLoad(store, MustLoadImage(t.image).layers[0]);
  CHECK_FALSE(touched.indexed_now);
  CHECK(touched.verified_now);
  // Verified once more, the new stamp serves the next load.
  Layer again = MustLoad(store, MustLoadImage(t.image).layers[0]);
  CHECK_FALSE(again.indexed_now);
  CHECK_FALSE(again.verified_now);
}

TEST_CASE("store: a changed byte in the blob is a digest mismatch naming the layer", "[store]") {
  OneLayer t;
  LayerStore store(t.cache);
  const size_t marker = t.tar.find("CONTENT-MARKER");
  REQUIRE(marker != std::string::npos);
  SECTION("after the layer was cached") { MustLoad(store, MustLoadImage(t.image).layers[0]); }
  SECTION("before it was ever cached") {}
  ImageSpec image = MustLoadImage(t.image);
  PatchByte(t.BlobPath(image.layers[0]), marker, 'X');
  auto layer = store.Load(MustLoadImage(t.image).layers[0]);
  REQUIRE_FALSE(layer.ok());
  CHECK(layer.status().code() == EIO);
  CHECK_THAT(layer.status().message(), Catch::Contains(image.layers[0].label));
  CHECK_THAT(layer.status().message(), Catch::Contains("does not match its digest"));
  CHECK(TempFilesUnder(t.cache).empty());
}

TEST_CASE("store: gzip and zstd layers are served in place, with no copy, and later loads use "
          "the index", "[store]") {
  const std::string compression = GENERATE(as<std::string>{}, "gzip", "zstd");
  INFO(compression);
  OneLayer t(compression);
  testing::LetTimestampsSettle();
  LayerStore store(t.cache);
  const Digest diff_id = testing::Sha256Of(t.tar);
  ImageSpec image = MustLoadImage(t.image);
  REQUIRE(image.layers[0].compression != Compression::kNone);
  const Digest blob_digest = *image.layers[0].blob_digest;
  {
    Layer first = MustLoad(store, image.layers[0]);
    CHECK(first.indexed_now);
    CHECK(first.data->FileAt(0).fd == -1);
    CHECK_THAT(first.served, Catch::StartsWith(compression == "gzip" ? "checkpoints 1 (span 1 MiB)"
                                                                     : "zstd frames 1 (span"));
    CHECK(Content(first, "data.bin") == "CONTENT-MARKER and the rest of the file");
  }
  CHECK_FALSE(Exists(store.CopyPath(diff_id)));
  CHECK(FilesUnder(t.cache + "/blobs").empty());
  CHECK_FALSE(Exists(store.IndexPath(diff_id)));
  REQUIRE(Exists(store.IndexPath(blob_digest)));
  Layer second = MustLoad(store, MustLoadImage(t.image).layers[0]);
  CHECK_FALSE(second.indexed_now);
  CHECK_FALSE(second.verified_now);
  CHECK(second.index.codec() != kIndexCodecNone);
  CHECK(Content(second, "etc/os-release") == "ID=layerfs\n");
  CHECK(TempFilesUnder(t.cache).empty());
}

// A zstd layer of one frame larger than a span may be: it cannot be entered in the middle, so it
// is decompressed once into the cache.
struct OneFrame {
  TempDir dir;
  std::string image = dir.Sub("image");
  std::string cache = dir.Sub("cache");
  std::string tar = TarWriter()
                        .File("data.bin", "CONTENT-MARKER and the rest of the file")
                        .File("big", std::string(17u << 20, 'b'))
                        .Finish();
  OneFrame() { testing::WriteOciLayout(image, {tar}, "zstd"); }
};

TEST_CASE("store: a zstd layer of one large frame gets a decompressed copy", "[store]") {
  OneFrame t;
  LayerStore store(t.cache);
  const Digest diff_id = testing::Sha256Of(t.tar);
  const std::string copy = store.CopyPath(diff_id);
  CHECK(copy == t.cache + "/blobs/sha256/" + diff_id.hex() + ".tar");
  {
    Layer first = MustLoad(store, MustLoadImage(t.image).layers[0]);
    CHECK(first.indexed_now);
    CHECK(first.served == "decompressed copy");
    REQUIRE(Exists(copy));
    CHECK((testing::ReadFile(copy) == t.tar));
    CHECK(InodeOfFd(first.data->FileAt(0).fd) == InodeOfPath(copy));
    CHECK(first.data->FileAt(0).pos == 0);
  }
  Layer second = MustLoad(store, MustLoadImage(t.image).layers[0]);
  CHECK_FALSE(second.indexed_now);
  CHECK_FALSE(second.verified_now);
  CHECK(InodeOfFd(second.data->FileAt(0).fd) == InodeOfPath(copy));
  CHECK(Content(second, "data.bin") == "CONTENT-MARKER and the rest of the file");
  CHECK(TempFilesUnder(t.cache).empty());
}

TEST_CASE("store: a deleted uncompressed copy is rebuilt", "[store]") {
  OneFrame t;
  LayerStore store(t.cache);
  MustLoad(store, MustLoadImage(t.image).layers[0]);
  const std::string copy = store.CopyPath(testing::Sha256Of(t.tar));
  REQUIRE(::unlink(copy.c_str()) == 0);
  Layer rebuilt = MustLoad(store, MustLoadImage(t.image).layers[0]);
  CHECK(rebuilt.indexed_now);
  REQUIRE(Exists(copy));
  CHECK((testing::ReadFile(copy) == t.tar));
  CHECK(Content(rebuilt, "data.bin") == "CONTENT-MARKER and the rest of the file");
}

TEST_CASE("store: a changed uncompressed copy is not trusted", "[store]") {
  OneFrame t;
  LayerStore store(t.cache);
  MustLoad(store, MustLoadImage(t.image).layers[0]);
  const std::string copy = store.CopyPath(testing::Sha256Of(t.tar));
  PatchByte(copy, t.tar.find("CONTENT-MARKER"), 'X');
  Layer reloaded = MustLoad(store, MustLoadImage(t.image).layers[0]);
  CHECK(reloaded.verified_now);
  CHECK(Content(reloaded, "data.bin") == "CONTENT-MARKER and the rest of the file");
  CHECK((testing::ReadFile(copy) == t.tar));
}

TEST_CASE("store: a cache of the previous format is upgraded: the gzip layer's copy and old "
          "index go once the new index exists", "[store]") {
  OneLayer t("gzip");
  LayerStore store(t.cache);
  const Digest diff_id = testing::Sha256Of(t.tar);
  // What the previous version left: an index of format version 1 keyed by the diff_id, and the
  // uncompressed copy beside it.
  std::string old_index(256, '\0');
  std::memcpy(old_index.data(), kIndexMagic, sizeof(kIndexMagic));
  const uint32_t version = 1;
  std::memcpy(old_index.data() + 8, &version, sizeof(version));
  REQUIRE(MakeDirs(t.cache + "/index/sha256").ok());
  REQUIRE(MakeDirs(t.cache + "/blobs/sha256").ok());
  testing::WriteFile(store.IndexPath(diff_id), old_index);
  testing::WriteFile(store.CopyPath(diff_id), t.tar);

  SECTION("an outdated cache") {
    Layer layer = MustLoad(store, MustLoadImage(t.image).layers[0]);
    CHECK(layer.indexed_now);
    CHECK(layer.index.codec() == kIndexCodecGzip);
    CHECK(Content(layer, "data.bin") == "CONTENT-MARKER and the rest of the file");
    CHECK_FALSE(Exists(store.CopyPath(diff_id)));
    CHECK_FALSE(Exists(store.IndexPath(diff_id)));
  }
  SECTION("a current copy, which another image's zstd layer of one frame uses, is kept") {
    // The same tar as a plain layer: its index (keyed by the diff_id) is of today's format.
    OneLayer plain("none");
    MustLoad(store, MustLoadImage(plain.image).layers[0]);
    Layer layer = MustLoad(store, MustLoadImage(t.image).layers[0]);
    CHECK(layer.index.codec() == kIndexCodecGzip);
    CHECK(Exists(store.CopyPath(diff_id)));
    CHECK(LayerIndex::Open(store.IndexPath(diff_id)).ok());
  }
}

TEST_CASE("store: a corrupt cached index is rebuilt, not trusted", "[store]") {
  OneLayer t;
  LayerStore store(t.cache);
  MustLoad(store, MustLoadImage(t.image).layers[0]);
  const std::string index_path = store.IndexPath(testing::Sha256Of(t.tar));
  const std::string good = testing::ReadFile(index_path);
  REQUIRE(good.size() > 512);

  SECTION("truncated") { testing::WriteFile(index_path, good.substr(0, good.size() / 2)); }
  SECTION("empty") { testing::WriteFile(index_path, ""); }
  SECTION("one byte flipped") {
    std::string bad = good;
    bad[bad.size() - 20] ^= 0x40;
    testing::WriteFile(index_path, bad);
  }
  SECTION("another layer's index in its place") {
    TempDir other_dir;
    const std::string other_tar = TarWriter().File("other", "o").Finish();
    testing::WriteOciLayout(other_dir.Sub("img"), {other_tar});
    LayerStore other_store(other_dir.Sub("cache"));
    MustLoad(other_store, MustLoadImage(other_dir.Sub("img")).layers[0]);
    testing::WriteFile(index_path,
                       testing::ReadFile(other_store.IndexPath(testing::Sha256Of(other_tar))));
  }
  Layer rebuilt = MustLoad(store, MustLoadImage(t.image).layers[0]);
  CHECK(rebuilt.indexed_now);
  CHECK(Content(rebuilt, "etc/os-release") == "ID=layerfs\n");
  CHECK((testing::ReadFile(index_path) == good));
  CHECK(LayerIndex::Open(index_path).ok());
}

TEST_CASE("store: no temporary files are left in the cache after success or failure", "[store]") {
  SECTION("success, gzip layer") {
    OneLayer t("gzip");
    LayerStore store(t.cache);
    MustLoad(store, MustLoadImage(t.image).layers[0]);
    CHECK(TempFilesUnder(t.cache).empty());
  }
  SECTION("a compressed layer whose content does not match its diff_id") {
    OneLayer t("gzip");
    LayerStore store(t.cache);
    LayerSpec spec = std::move(MustLoadImage(t.image).layers[0]);
    spec.diff_id = testing::Sha256Of("some other tar");
    auto layer = store.Load(spec);
    REQUIRE_FALSE(layer.ok());
    CHECK_THAT(layer.status().message(), Catch::Contains("does not match its digest"));
    CHECK(TempFilesUnder(t.cache).empty());
    CHECK_FALSE(Exists(store.CopyPath(*spec.diff_id)));
    CHECK_FALSE(Exists(store.IndexPath(*spec.diff_id)));
  }
  SECTION("a compressed layer that is cut short") {
    OneLayer t("zstd");
    LayerStore store(t.cache);
    ImageSpec image = MustLoadImage(t.image);
    LayerSpec spec = std::move(image.layers[0]);
    spec.blob.length /= 2;
    auto layer = store.Load(spec);
    REQUIRE_FALSE(layer.ok());
    CHECK_THAT(layer.status().message(), Catch::Contains(spec.label));
    CHECK(TempFilesUnder(t.cache).empty());
  }
}

TEST_CASE("store: an entry the index builder refuses is an error naming the layer and entry",
          "[store]") {
  TempDir dir;
  testing::WriteOciLayout(dir.Sub("image"),
                          {TarWriter().File("ok", "1").File("../escape", "x").Finish()});
  LayerStore store(dir.Sub("cache"));
  ImageSpec image = MustLoadImage(dir.Sub("image"));
  auto layer = store.Load(image.layers[0]);
  REQUIRE_FALSE(layer.ok());
  CHECK(layer.status().code() == EINVAL);
  CHECK_THAT(layer.status().message(), Catch::Contains(image.layers[0].label));
  CHECK_THAT(layer.status().message(), Catch::Contains("../escape"));
  CHECK(TempFilesUnder(dir.Sub("cache")).empty());
}

TEST_CASE("store: a layer spec without a diff_id is refused, naming the layer", "[store]") {
  OneLayer t;
  LayerSpec spec = std::move(MustLoadImage(t.image).layers[0]);
  spec.diff_id.reset();
  auto layer = LayerStore(t.cache).Load(spec);
  REQUIRE_FALSE(layer.ok());
  CHECK(layer.status().code() == EINVAL);
  CHECK_THAT(layer.status().message(), Catch::Contains(spec.label));
}

TEST_CASE("store: a cache path that is a regular file gives an error naming it", "[store]") {
  OneLayer t;
  testing::WriteFile(t.cache, "not a directory");
  auto layer = LayerStore(t.cache).Load(MustLoadImage(t.image).layers[0]);
  REQUIRE_FALSE(layer.ok());
  CHECK(layer.status().code() == ENOTDIR);
  CHECK_THAT(layer.status().message(), Catch::Contains(t.cache));
  CHECK_THAT(layer.status().message(), Catch::Contains("cache directory"));
}

// Runs `body` in a child process and returns what it returned. For checks that change the
// process's identity or mounts, which must not leak into the test process. `body` must not use
// Catch's macros.
std::string InChild(const std::function<std::string()>& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string out;
    try {
      out = body();
    } catch (...) {
      out = "exception in child";
    }
    ssize_t ignored = ::write(fds[1], out.data(), out.size());
    (void)ignored;
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return out;
}

// What a Load in the child reported: "ok", or "<errno> <message>".
std::string Describe(const Result<Layer>& layer) {
  if (layer.ok()) return "ok";
  return std::to_string(layer.status().code()) + " " + layer.status().message();
}

TEST_CASE("store: a read-only cache directory gives an error naming it", "[store]") {
  OneLayer t;
  REQUIRE(::mkdir(t.cache.c_str(), 0755) == 0);
  SECTION("a read-only bind mount, which stops root too") {
    std::string result = InChild([&]() -> std::string {
      if (::unshare(CLONE_NEWNS) != 0) return std::string("skip: unshare: ") + std::strerror(errno);
      if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount(t.cache.c_str(), t.cache.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
          ::mount(nullptr, t.cache.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) !=
              0) {
        return std::string("skip: mount: ") + std::strerror(errno);
      }
      auto image = LoadImage(t.image, LoadOptions{});
      if (!image.ok()) return "image: " + image.status().message();
      return Describe(LayerStore(t.cache).Load(image->layers[0]));
    });
    if (result.rfind("skip:", 0) == 0) {
      WARN("cannot make a read-only bind mount here (" << result << "); nothing checked");
    } else {
      CHECK_THAT(result, Catch::StartsWith(std::to_string(EROFS) + " "));
      CHECK_THAT(result, Catch::Contains(t.cache));
      CHECK_THAT(result, Catch::Contains("cache directory"));
    }
  }
  SECTION("mode 0555, for a user without root's override") {
    REQUIRE(::chmod(t.dir.path().c_str(), 0755) == 0);  // let the unprivileged child in
    REQUIRE(::chmod(t.cache.c_str(), 0555) == 0);
    std::string result = InChild([&]() -> std::string {
      if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) {
        return std::string("skip: setuid: ") + std::strerror(errno);
      }
      auto image = LoadImage(t.image, LoadOptions{});
      if (!image.ok()) return "image: " + image.status().message();
      return Describe(LayerStore(t.cache).Load(image->layers[0]));
    });
    REQUIRE(::chmod(t.cache.c_str(), 0755) == 0);
    CHECK_THAT(result, Catch::StartsWith(std::to_string(EACCES) + " "));
    CHECK_THAT(result, Catch::Contains(t.cache));
    CHECK_THAT(result, Catch::Contains("cache directory"));
  }
}

TEST_CASE("store: a cache made read-only after use still serves what it holds", "[store]") {
  OneLayer t;
  MustLoad(LayerStore(t.cache), MustLoadImage(t.image).layers[0]);
  std::string result = InChild([&]() -> std::string {
    if (::unshare(CLONE_NEWNS) != 0) return std::string("skip: unshare: ") + std::strerror(errno);
    if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(t.cache.c_str(), t.cache.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
        ::mount(nullptr, t.cache.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) !=
            0) {
      return std::string("skip: mount: ") + std::strerror(errno);
    }
    auto image = LoadImage(t.image, LoadOptions{});
    if (!image.ok()) return "image: " + image.status().message();
    auto layer = LayerStore(t.cache).Load(image->layers[0]);
    if (!layer.ok()) return Describe(layer);
    auto content = testing::ReadPath(*layer, "etc/os-release");
    return layer->indexed_now ? "indexed again" : content.ok() ? *content : "unreadable";
  });
  if (result.rfind("skip:", 0) == 0) {
    WARN("cannot make a read-only bind mount here (" << result << "); nothing checked");
  } else {
    CHECK(result == "ID=layerfs\n");
  }
}

TEST_CASE("store: LoadAll returns the layers bottom-first", "[store]") {
  TempDir dir;
  std::vector<std::string> tars;
  for (int i = 0; i < 5; ++i) {
    // Upper layers are larger, so that loading largest-first finishes them out of order.
    tars.push_back(TarWriter()
                       .File("layer", std::to_string(i))
                       .File("padding", std::string(static_cast<size_t>(i) * 20000, 'p'))
                       .Finish());
  }
  testing::WriteDockerDir(dir.Sub("image"), tars);
  testing::LetTimestampsSettle();
  const unsigned threads = GENERATE(1u, 2u, 4u);
  INFO("threads " << threads);
  LayerStore store(dir.Sub("cache"));
  StoreStats stats;
  auto layers = store.LoadAll(MustLoadImage(dir.Sub("image")).layers, threads, &stats);
  INFO(layers.status().message());
  REQUIRE(layers.ok());
  REQUIRE(layers->size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    INFO("layer " << i);
    CHECK((*layers)[i].position == i);
    CHECK((*layers)[i].index.diff_id() == testing::Sha256Of(tars[i]));
    CHECK(Content((*layers)[i], "layer") == std::to_string(i));
  }
  CHECK(stats.layers_indexed == 5);
  CHECK(stats.layers_verified == 5);

  StoreStats again;
  auto cached = store.LoadAll(MustLoadImage(dir.Sub("image")).layers, threads, &again);
  REQUIRE(cached.ok());
  CHECK(again.layers_indexed == 0);
  CHECK(again.layers_verified == 0);
  CHECK(Content((*cached)[4], "layer") == "4");
}

TEST_CASE("store: LoadAll of an image holding one layer twice loads both", "[store]") {
  TempDir dir;
  const std::string base = TarWriter().File("base", "b").Finish();
  const std::string top = TarWriter().File("top", "t").Finish();
  testing::WriteOciLayout(dir.Sub("image"), {base, top, base}, "gzip");
  LayerStore store(dir.Sub("cache"));
  auto layers = store.LoadAll(MustLoadImage(dir.Sub("image")).layers, 3);
  INFO(layers.status().message());
  REQUIRE(layers.ok());
  REQUIRE(layers->size() == 3);
  CHECK(Content((*layers)[0], "base") == "b");
  CHECK(Content((*layers)[1], "top") == "t");
  CHECK(Content((*layers)[2], "base") == "b");
  CHECK((*layers)[2].position == 2);
  CHECK(TempFilesUnder(dir.Sub("cache")).empty());
}

TEST_CASE("store: LoadAll of no layers returns none", "[store]") {
  TempDir dir;
  auto layers = LayerStore(dir.Sub("cache")).LoadAll({}, 4);
  REQUIRE(layers.ok());
  CHECK(layers->empty());
}

// Sets an environment variable for one scope and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    if (old != nullptr) old_ = old;
    had_ = old != nullptr;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST_CASE("store: the default cache is under XDG_CACHE_HOME, else under HOME", "[store]") {
  {
    ScopedEnv xdg("XDG_CACHE_HOME", "/var/cache/me");
    ScopedEnv home("HOME", "/home/me");
    CHECK(LayerStore::DefaultDir() == "/var/cache/me/layerfs");
  }
  {
    // A relative XDG_CACHE_HOME is ignored, as the XDG base directory spec requires.
    ScopedEnv xdg("XDG_CACHE_HOME", "relative/cache");
    ScopedEnv home("HOME", "/home/me");
    CHECK(LayerStore::DefaultDir() == "/home/me/.cache/layerfs");
  }
  {
    ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
    ScopedEnv home("HOME", nullptr);
    CHECK_THAT(LayerStore::DefaultDir(), Catch::StartsWith("/var/tmp/layerfs-cache-"));
  }
}

TEST_CASE("store: LoadAll fails with the error of the broken layer", "[store]") {
  TempDir dir;
  std::vector<std::string> tars = {TarWriter().File("a", "a").Finish(),
                                   TarWriter().File("b", "b").File("../bad", "x").Finish(),
                                   TarWriter().File("c", "c").Finish()};
  testing::WriteOciLayout(dir.Sub("image"), tars);
  ImageSpec image = MustLoadImage(dir.Sub("image"));
  auto layers = LayerStore(dir.Sub("cache")).LoadAll(image.layers, 1);
  REQUIRE_FALSE(layers.ok());
  CHECK_THAT(layers.status().message(), Catch::Contains(image.layers[1].label));
  CHECK_THAT(layers.status().message(), Catch::Contains("../bad"));
}

}  // namespace
}  // namespace layerfs
