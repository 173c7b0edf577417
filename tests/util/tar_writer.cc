#include "tests/util/tar_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <chrono>

#include "blob/sha256.h"
#include "index/index_builder.h"
#include "index/layer_data.h"
#include "tar/tar_reader.h"

namespace layerfs::testing {
namespace {

la_ssize_t AppendToString(archive*, void* client, const void* buf, size_t size) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buf), size);
  return static_cast<la_ssize_t>(size);
}

void Check(int r, archive* a, const char* what) {
  if (r < ARCHIVE_WARN) {
    throw std::runtime_error(std::string(what) + ": " +
                             (archive_error_string(a) ? archive_error_string(a) : "?"));
  }
}

std::string Compress(const std::string& data, int filter) {
  std::string out;
  archive* a = archive_write_new();
  // The filter's own function, not archive_write_add_filter(): that one links every filter.
  if (filter == ARCHIVE_FILTER_GZIP) {
    archive_write_add_filter_gzip(a);
  } else {
    archive_write_add_filter_zstd(a);
  }
  archive_write_set_format_raw(a);
  archive_write_set_bytes_in_last_block(a, 1);
  Check(archive_write_open(a, &out, nullptr, AppendToString, nullptr), a, "open");
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  Check(archive_write_header(a, e), a, "header");
  archive_write_data(a, data.data(), data.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

}  // namespace

TarWriter& TarWriter::Add(TarSpec spec) {
  specs_.push_back(std::move(spec));
  return *this;
}

TarWriter& TarWriter::File(std::string path, std::string content, uint32_t mode) {
  TarSpec s;
  s.path = std::move(path);
  s.content = std::move(content);
  s.mode = mode;
  return Add(std::move(s));
}

TarWriter& TarWriter::Dir(std::string path, uint32_t mode) {
  TarSpec s;
  s.path = std::move(path);
  s.type = TarSpec::Type::kDir;
  s.mode = mode;
  return Add(std::move(s));
}

TarWriter& TarWriter::Symlink(std::string path, std::string target) {
  TarSpec s;
  s.path = std::move(path);
  s.type = TarSpec::Type::kSymlink;
  s.link = std::move(target);
  s.mode = 0777;
  return Add(std::move(s));
}

TarWriter& TarWriter::Hardlink(std::string path, std::string target) {
  TarSpec s;
  s.path = std::move(path);
  s.type = TarSpec::Type::kHardlink;
  s.link = std::move(target);
  return Add(std::move(s));
}

TarWriter& TarWriter::Whiteout(std::string path) {
  size_t slash = path.rfind('/');
  std::string wh = slash == std::string::npos
                       ? ".wh." + path
                       : path.substr(0, slash + 1) + ".wh." + path.substr(slash + 1);
  return File(std::move(wh), "", 0);
}

TarWriter& TarWriter::Opaque(std::string dir) {
  if (!dir.empty() && dir.back() != '/') dir += '/';
  return File(dir + ".wh..wh..opq", "", 0);
}

std::string TarWriter::Finish() const {
  std::string out;
  archive* a = archive_write_new();
  switch (format_) {
    case TarFormat::kPax: archive_write_set_format_pax(a); break;
    case TarFormat::kGnu: archive_write_set_format_gnutar(a); break;
    case TarFormat::kUstar: archive_write_set_format_ustar(a); break;
  }
  archive_write_set_bytes_per_block(a, 10240);
  Check(archive_write_open(a, &out, nullptr, AppendToString, nullptr), a, "open");
  for (const TarSpec& s : specs_) {
    archive_entry* e = archive_entry_new();
    archive_entry_copy_pathname(e, s.path.c_str());
    archive_entry_set_perm(e, s.mode);
    archive_entry_set_uid(e, s.uid);
    archive_entry_set_gid(e, s.gid);
    archive_entry_set_mtime(e, s.mtime, s.mtime_nsec);
    bool data = false;
    switch (s.type) {
      case TarSpec::Type::kFile:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, s.size_override >= 0 ? s.size_override
                                                       : static_cast<la_int64_t>(s.content.size()));
        for (auto [off, len] : s.sparse) {
          archive_entry_sparse_add_entry(e, static_cast<la_int64_t>(off),
                                         static_cast<la_int64_t>(len));
        }
        data = true;
        break;
      case TarSpec::Type::kDir: archive_entry_set_filetype(e, AE_IFDIR); break;
      case TarSpec::Type::kSymlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_copy_symlink(e, s.link.c_str());
        break;
      case TarSpec::Type::kHardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_copy_hardlink(e, s.link.c_str());
        archive_entry_set_size(e, 0);
        break;
      case TarSpec::Type::kChar:
      case TarSpec::Type::kBlock:
        archive_entry_set_filetype(e, s.type == TarSpec::Type::kChar ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(e, s.major);
        archive_entry_set_rdevminor(e, s.minor);
        break;
      case TarSpec::Type::kFifo: archive_entry_set_filetype(e, AE_IFIFO); break;
      case TarSpec::Type::kSocket: archive_entry_set_filetype(e, AE_IFSOCK); break;
    }
    for (const auto& [name, value] : s.xattrs) {
      archive_entry_xattr_add_entry(e, name.c_str(), value.data(), value.size());
    }
    Check(archive_write_header(a, e), a, "write header");
    if (data && !s.content.empty()) {
      la_ssize_t n = archive_write_data(a, s.content.data(), s.content.size());
      if (n < 0) Check(ARCHIVE_FATAL, a, "write data");
    }
    archive_entry_free(e);
  }
  Check(archive_write_close(a), a, "close");
  archive_write_free(a);
  return out;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/layerfs-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("write " + path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void LetTimestampsSettle() {
  std::this_thread::sleep_for(std::chrono::nanoseconds(kRacyStampNs) +
                              std::chrono::milliseconds(20));
}

Digest Sha256Of(const std::string& data) { return Sha256::Of(data.data(), data.size()); }
std::string Gzip(const std::string& data) { return Compress(data, ARCHIVE_FILTER_GZIP); }
std::string Zstd(const std::string& data) { return Compress(data, ARCHIVE_FILTER_ZSTD); }

Result<Layer> IndexTar(const std::string& tar, size_t position) {
  int fd = ::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "O_TMPFILE");
  auto file = std::make_shared<UniqueFd>(fd);
  if (::pwrite(fd, tar.data(), tar.size(), 0) != static_cast<ssize_t>(tar.size())) {
    return Status::FromErrno(errno, "pwrite");
  }
  IndexBuilder builder;
  Sha256 hash;
  TarReadOptions options;
  options.blob_hash = &hash;
  options.tar_hash = &hash;
  auto stats = ReadTar(fd, 0, tar.size(), "test.tar", options,
                       [&](const TarEntry& e) { return builder.Add(e); });
  if (!stats.ok()) return stats.status();
  LAYERFS_ASSIGN_OR_RETURN(std::string bytes, builder.Finish(hash.Finish(), stats->tar_bytes));
  Layer layer;
  LAYERFS_ASSIGN_OR_RETURN(layer.index, LayerIndex::FromBytes(std::move(bytes)));
  LAYERFS_ASSIGN_OR_RETURN(layer.data, FileSource::Open(file, 0, stats->tar_bytes, "test.tar"));
  layer.position = position;
  layer.label = "layer " + std::to_string(position);
  layer.warnings = builder.warnings();
  return layer;
}

std::vector<Layer> IndexLayers(const std::vector<std::string>& tars) {
  std::vector<Layer> layers;
  for (size_t i = 0; i < tars.size(); ++i) {
    auto layer = IndexTar(tars[i], i);
    if (!layer.ok()) throw std::runtime_error(layer.status().message());
    layers.push_back(std::move(layer).value());
  }
  return layers;
}

std::string ConfigFor(const std::vector<std::string>& tars) {
  nlohmann::json config;
  config["architecture"] = "amd64";
  config["os"] = "linux";
  config["rootfs"]["type"] = "layers";
  config["rootfs"]["diff_ids"] = nlohmann::json::array();
  config["history"] = nlohmann::json::array();
  for (size_t i = 0; i < tars.size(); ++i) {
    config["rootfs"]["diff_ids"].push_back(Sha256Of(tars[i]).str());
    config["history"].push_back({{"created_by", "layer " + std::to_string(i)}});
  }
  return config.dump();
}

void WriteOciLayout(const std::string& dir, const std::vector<std::string>& tars,
                    const std::string& compression, const std::string& ref) {
  auto put_blob = [&](const std::string& data) {
    Digest d = Sha256Of(data);
    WriteFile(dir + "/blobs/sha256/" + d.hex(), data);
    return d;
  };
  nlohmann::json manifest;
  manifest["schemaVersion"] = 2;
  manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json";
  std::string config = ConfigFor(tars);
  manifest["config"] = {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                        {"digest", put_blob(config).str()},
                        {"size", config.size()}};
  manifest["layers"] = nlohmann::json::array();
  for (const std::string& tar : tars) {
    std::string blob = tar;
    std::string type = "application/vnd.oci.image.layer.v1.tar";
    if (compression.rfind("cmd:", 0) == 0) {
      blob = Filter(compression.substr(4), tar);
      type += compression.find("zstd") != std::string::npos ? "+zstd" : "+gzip";
    } else if (compression == "gzip") {
      blob = Gzip(tar);
      type += "+gzip";
    } else if (compression == "zstd") {
      blob = Zstd(tar);
      type += "+zstd";
    }
    manifest["layers"].push_back(
        {{"mediaType", type}, {"digest", put_blob(blob).str()}, {"size", blob.size()}});
  }
  std::string manifest_text = manifest.dump();
  nlohmann::json index;
  index["schemaVersion"] = 2;
  index["manifests"] = nlohmann::json::array();
  index["manifests"].push_back(
      {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
       {"digest", put_blob(manifest_text).str()},
       {"size", manifest_text.size()},
       {"annotations", {{"org.opencontainers.image.ref.name", ref}}}});
  WriteFile(dir + "/index.json", index.dump());
  WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
}

std::string Filter(const std::string& command, const std::string& input) {
  TempDir dir;
  WriteFile(dir.Sub("in"), input);
  const int status = RunShell(command + " < " + ShellQuote(dir.Sub("in")) + " > " +
                              ShellQuote(dir.Sub("out")));
  if (status != 0) throw std::runtime_error("failed: " + command);
  return ReadFile(dir.Sub("out"));
}

void WriteDockerDir(const std::string& dir, const std::vector<std::string>& tars,
                    const std::string& tag) {
  std::string config = ConfigFor(tars);
  std::string config_name = Sha256Of(config).hex() + ".json";
  WriteFile(dir + "/" + config_name, config);
  nlohmann::json entry;
  entry["Config"] = config_name;
  entry["RepoTags"] = {tag};
  entry["Layers"] = nlohmann::json::array();
  for (const std::string& tar : tars) {
    std::string name = Sha256Of(tar).hex() + ".tar";
    WriteFile(dir + "/" + name, tar);
    entry["Layers"].push_back(name);
  }
  WriteFile(dir + "/manifest.json", nlohmann::json::array({entry}).dump());
}

Result<std::string> ReadPath(const Layer& layer, std::string_view path, size_t chunk) {
  uint32_t id = layer.index.FindPath(path);
  if (id == kNoEntry) return Status::NotFound(std::string(path) + ": not in the layer");
  const IndexEntry& e = layer.index.entry(id);
  if (e.type != static_cast<uint8_t>(EntryType::kRegular)) {
    return Status::Invalid(std::string(path) + ": not a regular file");
  }
  std::string out(static_cast<size_t>(e.size), '\0');
  uint64_t offset = 0;
  while (offset < e.size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(chunk, e.size - offset));
    LAYERFS_ASSIGN_OR_RETURN(size_t n, ReadEntry(layer, e, offset, out.data() + offset, want));
    if (n != want) return Status::Corrupt(std::string(path) + ": short read");
    offset += n;
  }
  return out;
}

int RunShell(const std::string& command) {
  int status = std::system(command.c_str());
  if (status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

UniqueFd TempFileWith(const std::string& data) {
  UniqueFd fd(::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd) throw std::runtime_error("O_TMPFILE: " + std::string(std::strerror(errno)));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd.get(), data.data() + done, data.size() - done,
                         static_cast<off_t>(done));
    if (n <= 0) throw std::runtime_error("pwrite: " + std::string(std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return fd;
}

Result<Layer> IndexTarFile(const std::string& path, size_t position) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::FromErrno(errno, path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, path);
  auto file = std::make_shared<UniqueFd>(std::move(fd));
  IndexBuilder builder;
  Sha256 hash;
  TarReadOptions options;
  options.blob_hash = &hash;
  options.tar_hash = &hash;
  auto stats = ReadTar(file->get(), 0, static_cast<uint64_t>(st.st_size), path, options,
                       [&](const TarEntry& e) { return builder.Add(e); });
  if (!stats.ok()) return stats.status();
  LAYERFS_ASSIGN_OR_RETURN(std::string bytes, builder.Finish(hash.Finish(), stats->tar_bytes));
  Layer layer;
  LAYERFS_ASSIGN_OR_RETURN(layer.index, LayerIndex::FromBytes(std::move(bytes)));
  LAYERFS_ASSIGN_OR_RETURN(layer.data, FileSource::Open(file, 0, stats->tar_bytes, "test.tar"));
  layer.position = position;
  layer.label = "layer " + std::to_string(position);
  layer.warnings = builder.warnings();
  return layer;
}

Digest PutBlob(const std::string& dir, const std::string& data) {
  Digest d = Sha256Of(data);
  WriteFile(dir + "/blobs/sha256/" + d.hex(), data);
  return d;
}

std::string TarOfDirectory(const std::string& dir) {
  std::vector<std::filesystem::path> paths;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());
  TarWriter tar;
  for (const auto& p : paths) {
    std::string rel = p.lexically_relative(dir).generic_string();
    auto status = std::filesystem::symlink_status(p);
    if (std::filesystem::is_symlink(status)) {
      tar.Symlink(rel, std::filesystem::read_symlink(p).generic_string());
    } else if (std::filesystem::is_directory(status)) {
      tar.Dir(rel);
    } else if (std::filesystem::is_regular_file(status)) {
      tar.File(rel, ReadFile(p.string()));
    }
  }
  return tar.Finish();
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() | 1);
  return out;
}

std::string UstarHeader(std::string_view name, char type, uint64_t size, std::string_view link) {
  std::string h(512, '\0');
  auto put = [&](size_t off, std::string_view v) {
    if (!v.empty()) std::memcpy(&h[off], v.data(), std::min<size_t>(v.size(), 100));
  };
  auto octal = [&](size_t off, size_t width, uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%0*llo", static_cast<int>(width - 1),
                  static_cast<unsigned long long>(v));
    put(off, std::string_view(buf, width - 1));
  };
  put(0, name);
  octal(100, 8, 0644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 1700000000);
  h[156] = type;
  put(157, link);
  put(257, "ustar");
  put(263, "00");
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%06o", sum);
  put(148, std::string_view(buf, 6));
  h[154] = '\0';
  return h;
}

}  // namespace layerfs::testing
