// Test helpers: write layer tars in memory with libarchive, index them, lay out images on disk.
#ifndef LAYERFS_TESTS_UTIL_TAR_WRITER_H_
#define LAYERFS_TESTS_UTIL_TAR_WRITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "index/layer_store.h"
#include "layerfs/digest.h"

namespace layerfs::testing {

enum class TarFormat { kPax, kGnu, kUstar };

// One tar header to write.
struct TarSpec {
  enum class Type { kFile, kDir, kSymlink, kHardlink, kChar, kBlock, kFifo, kSocket };
  std::string path;
  Type type = Type::kFile;
  std::string content;  // kFile: the bytes (for sparse files, the whole logical content)
  uint32_t mode = 0644;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 1700000000;
  uint32_t mtime_nsec = 0;
  std::string link;  // symlink or hard-link target
  uint32_t major = 0;
  uint32_t minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<std::pair<uint64_t, uint64_t>> sparse;  // (offset, length) data runs
  int64_t size_override = -1;  // header size to declare instead of content.size()
};

class TarWriter {
 public:
  explicit TarWriter(TarFormat format = TarFormat::kPax) : format_(format) {}

  TarWriter& Add(TarSpec spec);
  TarWriter& File(std::string path, std::string content, uint32_t mode = 0644);
  TarWriter& Dir(std::string path, uint32_t mode = 0755);
  TarWriter& Symlink(std::string path, std::string target);
  TarWriter& Hardlink(std::string path, std::string target);
  TarWriter& Whiteout(std::string path);  // writes dir/.wh.name for path dir/name
  TarWriter& Opaque(std::string dir);     // writes dir/.wh..wh..opq

  // The tar bytes (with end-of-archive blocks).
  std::string Finish() const;
  const std::vector<TarSpec>& specs() const { return specs_; }

 private:
  TarFormat format_;
  std::vector<TarSpec> specs_;
};

// A directory removed with its contents when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& data);
std::string ReadFile(const std::string& path);
Digest Sha256Of(const std::string& data);
std::string Gzip(const std::string& data);
std::string Zstd(const std::string& data);

// Waits until files written so far are old enough for LayerStore to stamp them as verified
// (kRacyStampNs): tests that expect a second load to be served from the cache call it after
// writing or touching a blob.
void LetTimestampsSettle();

// Indexes a tar held in memory into a Layer (index in memory, data in an unlinked temp file).
Result<Layer> IndexTar(const std::string& tar, size_t position = 0);

// Indexes each tar and returns the layers (bottom first).
std::vector<Layer> IndexLayers(const std::vector<std::string>& tars);

// The output of the shell command `command` given `input` on its standard input.
std::string Filter(const std::string& command, const std::string& input);

// Writes an OCI image layout at `dir` with the given layer tars (bottom first), compressed as
// `compression` ("none", "gzip", "zstd", or "cmd:COMMAND" to compress with a shell command, the
// media type saying zstd when the command names it, else gzip) and tagged `ref`.
void WriteOciLayout(const std::string& dir, const std::vector<std::string>& tars,
                    const std::string& compression = "none", const std::string& ref = "latest");
// Writes a docker-save directory layout (manifest.json, config, <hex>.tar layers) at `dir`.
void WriteDockerDir(const std::string& dir, const std::vector<std::string>& tars,
                    const std::string& tag = "test:latest");
// The image config JSON for these layers (rootfs.diff_ids).
std::string ConfigFor(const std::vector<std::string>& tars);

// The bytes of a layer held in memory: a ByteSource that is not a file, as a compressed or remote
// layer's is not.
class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  Status ReadAt(uint64_t offset, char* buf, size_t size) const override {
    if (offset > bytes_.size() || size > bytes_.size() - offset) {
      return Status::Corrupt("memory: read past the end");
    }
    bytes_.copy(buf, size, offset);
    return Status::Ok();
  }

 private:
  std::string bytes_;
  std::string name_ = "memory";
};

// Reads all bytes of the regular entry at `path` (normalised) of `layer` through ReadEntry, in
// reads of `chunk` bytes so that runs and holes are crossed at unaligned offsets.
Result<std::string> ReadPath(const Layer& layer, std::string_view path, size_t chunk = 65536);

// Runs `command` with /bin/sh -c; returns its exit status, or -1 if it did not exit normally.
int RunShell(const std::string& command);

// Quotes `s` for /bin/sh.
std::string ShellQuote(const std::string& s);

// An unlinked temporary file (O_TMPFILE) holding `data`, open for reading and writing.
UniqueFd TempFileWith(const std::string& data);

// Indexes the tar file at `path` (read in place, not copied) into a Layer, as IndexTar does.
Result<Layer> IndexTarFile(const std::string& path, size_t position = 0);

// Stores `data` in the OCI layout at `dir` as blobs/sha256/<hex> and returns its digest.
Digest PutBlob(const std::string& dir, const std::string& data);

// A tar (in memory) of everything under `dir`: directories, regular files and symlinks (kept as
// symlinks), with paths relative to `dir` in sorted order, as `docker save` or `podman save`
// write an image archive.
std::string TarOfDirectory(const std::string& dir);

// `n` pseudo-random bytes from `seed`, none of them zero (so that data never reads as a hole).
std::string RandomBytes(size_t n, uint32_t seed);

// One ustar header block built by hand (mode 0644, owner 0:0, checksum filled in), for headers
// that no tar writer produces: sizes that run past the data, bad checksums, PAX headers.
std::string UstarHeader(std::string_view name, char type, uint64_t size,
                        std::string_view link = {});

}  // namespace layerfs::testing

#endif  // LAYERFS_TESTS_UTIL_TAR_WRITER_H_
