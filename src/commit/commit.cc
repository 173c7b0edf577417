#include "commit/commit.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/log.h"
#include "base/path.h"
#include "blob/sha256.h"
#include "index/layer_data.h"
#include "scratch/scratch_dir.h"
#include "tar/whiteout.h"

namespace layerfs {
namespace {

using json = nlohmann::ordered_json;


// The xattrs of an upper object, without layerfs's own.
Result<std::vector<std::pair<std::string, std::string>>> XattrsOf(const std::string& path,
                                                                  const std::string& shown) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string names(4096, '\0');
  ssize_t n;
  while ((n = ::llistxattr(path.c_str(), names.data(), names.size())) < 0 && errno == ERANGE) {
    names.resize(names.size() * 4);
  }
  if (n < 0) {
    if (errno == ENOTSUP) return out;
    return Status::FromErrno(errno, shown + ": cannot list xattrs");
  }
  for (size_t pos = 0; pos < static_cast<size_t>(n);) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    if (name.empty() || name.rfind(kPrivateXattrPrefix, 0) == 0) continue;
    std::string value(256, '\0');
    ssize_t v;
    while ((v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size())) < 0 &&
           errno == ERANGE) {
      value.resize(value.size() * 4);
    }
    if (v < 0) return Status::FromErrno(errno, shown + ": cannot read xattr " + name);
    value.resize(static_cast<size_t>(v));
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

class ScratchWalker {
 public:
  ScratchWalker(const MergedTree& tree, LayerWriter* writer) : tree_(tree), writer_(writer) {}

  // Depth first, each directory's names sorted, with a stack of open directories rather than
  // recursion: a scratch directory may be thousands of levels deep.
  Status Walk(int upper_fd) {
    std::vector<Frame> stack;
    LAYERFS_RETURN_IF_ERROR(Push(&stack, UniqueFd(), upper_fd, ""));
    while (!stack.empty()) {
      Frame& top = stack.back();
      if (top.next == top.names.size()) {
        stack.pop_back();
        continue;
      }
      const std::string name = top.names[top.next++];
      const std::string rel = top.rel;
      UniqueFd sub;
      LAYERFS_RETURN_IF_ERROR(Entry(top.fd, rel, name, &sub));
      if (sub) {
        const int fd = sub.get();
        LAYERFS_RETURN_IF_ERROR(Push(&stack, std::move(sub), fd, Join(rel, name)));
      }
    }
    return Status::Ok();
  }

  Status Root(int upper_fd) {
    struct stat st;
    if (::fstat(upper_fd, &st) != 0) return Status::FromErrno(errno, "upper/");
    TarItem item = ItemOf(st, ".");
    const std::string proc = ProcFdPath(upper_fd);
    auto xattrs = XattrsOf(proc, "upper/");
    if (!xattrs.ok()) return xattrs.status();
    item.xattrs = std::move(*xattrs);
    if (auto over = ReadOverride(proc); over && S_ISDIR(over->mode)) Apply(*over, &item);
    LAYERFS_RETURN_IF_ERROR(Emit(item));
    return Walk(upper_fd);
  }

  ScratchLayerStats stats;

 private:
  struct Frame {
    UniqueFd owned;  // the directory, unless it is the caller's (upper/)
    int fd;
    std::string rel;
    std::vector<std::string> names;  // sorted
    size_t next = 0;
  };

  static Status Push(std::vector<Frame>* stack, UniqueFd owned, int fd, std::string rel) {
    std::vector<std::string> names;
    if (int err = ListNames(fd, &names)) {
      return Status::FromErrno(err, Shown(rel) + ": cannot list");
    }
    std::sort(names.begin(), names.end());
    stack->push_back(Frame{std::move(owned), fd, std::move(rel), std::move(names)});
    return Status::Ok();
  }

  static std::string Join(const std::string& rel, const std::string& name) {
    return rel.empty() ? name : rel + "/" + name;
  }
  static std::string Shown(const std::string& rel) { return "upper/" + Printable(rel); }

  // What the mount showed, when it kept owner, mode and device as an override.
  static void Apply(const Override& over, TarItem* item) {
    item->uid = over.uid;
    item->gid = over.gid;
    item->mode = over.mode;
    item->rdev = over.rdev;
  }

  static TarItem ItemOf(const struct stat& st, const std::string& path) {
    TarItem item;
    item.path = path;
    item.mode = st.st_mode;
    item.uid = st.st_uid;
    item.gid = st.st_gid;
    item.mtime = st.st_mtim;
    item.rdev = st.st_rdev;
    return item;
  }

  Status Emit(const TarItem& item) {
    ++stats.entries;
    return writer_->Add(item);
  }

  // Emits the entry `name` of the directory `dirfd`; a directory is returned open in `subdir`,
  // for the walk to list.
  Status Entry(int dirfd, const std::string& rel, const std::string& name, UniqueFd* subdir) {
    const std::string path = Join(rel, name);
    ClassifiedName kind = ClassifyName(name);
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::FromErrno(errno, Shown(path));
    }
    if (kind.kind == NameKind::kWhiteout || kind.kind == NameKind::kOpaque) {
      TarItem item = ItemOf(st, path);
      item.mode = S_IFREG | 0644;
      item.uid = item.gid = 0;
      item.size = 0;
      ++stats.whiteouts;
      return Emit(item);
    }
    if (kind.kind != NameKind::kPlain) {
      LogWarning("{}: not a name a layer can hold; left out", Shown(path));
      ++stats.skipped;
      return Status::Ok();
    }
    TarItem item = ItemOf(st, path);
    const std::string proc = ProcFdPath(dirfd, name);
    if (!S_ISLNK(st.st_mode)) {
      auto xattrs = XattrsOf(proc, Shown(path));
      if (!xattrs.ok()) return xattrs.status();
      item.xattrs = std::move(*xattrs);
    }
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
      // Owner, mode and device kept as an override by a mount that could not set them.
      if (auto over = ReadOverride(proc); over && S_ISDIR(over->mode) == S_ISDIR(st.st_mode)) {
        Apply(*over, &item);
        if (!S_ISREG(over->mode) && !S_ISDIR(over->mode)) {
          if (S_ISSOCK(over->mode)) {
            LogWarning("{}: a socket; a layer cannot hold it, left out", Shown(path));
            ++stats.skipped;
            return Status::Ok();
          }
          return Emit(item);  // a device or fifo kept as an empty file
        }
      }
    }
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR: {
        LAYERFS_RETURN_IF_ERROR(Emit(item));
        UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) return Status::FromErrno(errno, Shown(path));
        *subdir = std::move(sub);
        return Status::Ok();
      }
      case S_IFLNK: {
        std::string target(PATH_MAX, '\0');
        ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) return Status::FromErrno(errno, Shown(path));
        target.resize(static_cast<size_t>(n));
        item.link = target;
        return Emit(item);
      }
      case S_IFREG:
        return File(dirfd, name, path, st, std::move(item));
      case S_IFSOCK:
        LogWarning("{}: a socket; a layer cannot hold it, left out", Shown(path));
        ++stats.skipped;
        return Status::Ok();
      default:  // devices and fifos
        return Emit(item);
    }
  }

  Status File(int dirfd, const std::string& name, const std::string& path, const struct stat& st,
              TarItem item) {
    if (st.st_nlink > 1) {
      auto [it, inserted] = links_.emplace(st.st_ino, path);
      if (!inserted) {
        item.hardlink = true;
        item.link = it->second;
        return Emit(item);
      }
    }
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Status::FromErrno(errno, Shown(path));
    char origin[PATH_MAX];
    ssize_t len = ::fgetxattr(fd.get(), kMetacopyXattr.data(), origin, sizeof(origin));
    if (len >= 0) {
      // A metadata copy: the content is the image's.
      auto image_path = NormalizePath(std::string_view(origin, static_cast<size_t>(len)));
      uint32_t node = image_path.ok() ? tree_.LookupPath(*image_path) : MergedTree::kNoNode;
      if (node == MergedTree::kNoNode ||
          static_cast<EntryType>(tree_.EntryOf(node).type) != EntryType::kRegular) {
        return Status::Corrupt(fmt::format("{}: its content comes from {}, which the image does "
                                           "not have", Shown(path),
                                           Printable(std::string_view(origin, static_cast<size_t>(len)))));
      }
      const IndexEntry& e = tree_.EntryOf(node);
      const Layer& layer = tree_.layer(tree_.LayerOf(node));
      item.size = e.size;
      LAYERFS_RETURN_IF_ERROR(Emit(item));
      ++stats.metacopies;
      std::vector<char> buf(1 << 20);
      for (uint64_t off = 0; off < e.size;) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), e.size - off));
        auto got = ReadEntry(layer, e, off, buf.data(), want);
        if (!got.ok()) return got.status();
        if (*got == 0) return Status::Corrupt(Shown(path) + ": the image's content ends early");
        LAYERFS_RETURN_IF_ERROR(writer_->WriteData(buf.data(), *got));
        off += *got;
      }
      return Status::Ok();
    }
    item.size = static_cast<uint64_t>(st.st_size);
    LAYERFS_RETURN_IF_ERROR(Emit(item));
    std::vector<char> buf(1 << 20);
    uint64_t left = item.size;
    while (left > 0) {
      ssize_t n = ::read(fd.get(), buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno(errno, Shown(path));
      if (n == 0) return Status::Error(EIO, Shown(path) + ": changed while being committed");
      LAYERFS_RETURN_IF_ERROR(writer_->WriteData(buf.data(), static_cast<size_t>(n)));
      left -= static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }

  const MergedTree& tree_;
  LayerWriter* writer_;
  std::map<ino_t, std::string> links_;
};

std::string NowRfc3339() {
  std::time_t now = std::time(nullptr);
  std::tm tm;
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Makes the new file `path`, has `fill` write it, and syncs it.
template <typename Fill>
Status WriteNewFile(const std::string& path, Fill&& fill) {
  UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out) return Status::FromErrno(errno, path);
  LAYERFS_RETURN_IF_ERROR(fill(out.get()));
  if (::fsync(out.get()) != 0) return Status::FromErrno(errno, path);
  return Status::Ok();
}

// Copies `length` bytes of `fd` at `offset` into the new file `path`.
Status CopyToFile(int fd, uint64_t offset, uint64_t length, const std::string& path) {
  return WriteNewFile(path, [&](int out) {
    int err = CopyBytes(fd, offset, out, 0, length);
    return err == 0 ? Status::Ok() : Status::FromErrno(err, path);
  });
}

// Writes the uncompressed tar of `layer` into the new file `path`.
Status CopyLayerTar(const Layer& layer, const std::string& path) {
  return WriteNewFile(path, [&](int out) {
    return CopySource(*layer.data, 0, layer.data->size(), out, 0).WithContext(path);
  });
}

Status WriteJson(const std::string& path, const std::string& text) {
  return WriteFileAtomic(path, text, 0644);
}

std::string_view LayerMediaType(Compression c) {
  switch (c) {
    case Compression::kGzip: return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::kZstd: return "application/vnd.oci.image.layer.v1.tar+zstd";
    default: return "application/vnd.oci.image.layer.v1.tar";
  }
}

// The base config with the new layer's diff_id and a history line.
Result<json> NewConfig(const ImageSpec& base, const WrittenLayer& written,
                       const CommitOptions& options) {
  json config = json::parse(base.config, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return Status::Invalid(base.location + ": its config is not a JSON object");
  }
  const std::string now = NowRfc3339();
  json& rootfs = config["rootfs"];
  if (!rootfs.is_object()) rootfs = json::object();
  rootfs["type"] = "layers";
  if (!rootfs["diff_ids"].is_array()) rootfs["diff_ids"] = json::array();
  rootfs["diff_ids"].push_back(written.diff_id.str());
  if (!config["history"].is_array()) config["history"] = json::array();
  config["history"].push_back({{"created", now}, {"created_by", options.created_by}});
  config["created"] = now;
  return config;
}

}  // namespace

Result<ScratchLayerStats> WriteScratchLayer(int upper_fd, const MergedTree& tree,
                                            LayerWriter* writer) {
  ScratchWalker walker(tree, writer);
  LAYERFS_RETURN_IF_ERROR(walker.Root(upper_fd));
  return walker.stats;
}

int RemoveStaleCommitFiles(const std::string& out) {
  const auto [parent, base] = SplitParent(out);
  const std::string dir = !parent.empty() ? std::string(parent) : out.starts_with('/') ? "/" : ".";
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return 0;
  DIR* d = ::fdopendir(::dup(dir_fd.get()));
  if (d == nullptr) return 0;
  std::vector<std::pair<std::string, bool>> candidates;  // name, is the image directory
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() <= base.size() || name.substr(0, base.size()) != base) continue;
    std::string_view rest = name.substr(base.size());
    bool is_tmp;
    if (rest.starts_with(".tmp-")) {
      is_tmp = true;
      rest.remove_prefix(5);
    } else if (rest.starts_with(".layer-")) {
      is_tmp = false;
      rest.remove_prefix(7);
    } else {
      continue;
    }
    if (rest.empty() || rest.size() > 10 ||
        rest.find_first_not_of("0123456789") != std::string_view::npos) {
      continue;
    }
    const long pid = std::stol(std::string(rest));
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) {
      continue;  // its commit may still run
    }
    candidates.emplace_back(std::string(name), is_tmp);
  }
  ::closedir(d);
  int removed = 0;
  for (const auto& [name, is_tmp] : candidates) {
    const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (is_tmp ? O_DIRECTORY : 0);
    UniqueFd fd(::openat(dir_fd.get(), name.c_str(), flags));
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;
    struct stat st;
    if (::fstat(fd.get(), &st) != 0 || st.st_uid != ::geteuid()) continue;
    if (is_tmp) {
      if (!RemoveContents(fd.get(), dir + "/" + name).ok()) continue;
      if (::unlinkat(dir_fd.get(), name.c_str(), AT_REMOVEDIR) != 0) continue;
    } else if (!S_ISREG(st.st_mode) || ::unlinkat(dir_fd.get(), name.c_str(), 0) != 0) {
      continue;
    }
    LogInfo("{}/{}: removed, left by a commit that did not finish", dir, name);
    ++removed;
  }
  return removed;
}

Status WriteCommittedImage(const ImageSpec& base, const std::vector<Layer>& layers,
                           const std::string& layer_path, const WrittenLayer& written,
                           const CommitOptions& options, const std::string& out) {
  struct stat st;
  if (::lstat(out.c_str(), &st) == 0) {
    return Status::Error(EEXIST, out + ": already exists; name a new directory for the image");
  }
  const std::string tmp = fmt::format("{}.tmp-{}", out, ::getpid());
  if (::mkdir(tmp.c_str(), 0755) != 0) return Status::FromErrno(errno, tmp);
  // Held until this process ends: RemoveStaleCommitFiles leaves a locked directory alone.
  UniqueFd tmp_lock(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (tmp_lock) (void)::flock(tmp_lock.get(), LOCK_EX | LOCK_NB);
  auto write_all = [&]() -> Status {
    auto config = NewConfig(base, written, options);
    if (!config.ok()) return config.status();
    const std::string config_text = config->dump();
    const Digest config_digest = Sha256::Of(config_text.data(), config_text.size());
    std::vector<std::string> layer_names;

    if (options.format == ImageFormat::kDocker) {
      for (const Layer& l : layers) {
        std::string name = l.index.diff_id().hex() + ".tar";
        LAYERFS_RETURN_IF_ERROR(CopyLayerTar(l, tmp + "/" + name));
        layer_names.push_back(name);
      }
      std::string name = written.diff_id.hex() + ".tar";
      if (::rename(layer_path.c_str(), (tmp + "/" + name).c_str()) != 0) {
        UniqueFd in(::open(layer_path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in) return Status::FromErrno(errno, layer_path);
        LAYERFS_RETURN_IF_ERROR(CopyToFile(in.get(), 0, written.blob_size, tmp + "/" + name));
      }
      layer_names.push_back(name);
      const std::string config_name = config_digest.hex() + ".json";
      LAYERFS_RETURN_IF_ERROR(WriteJson(tmp + "/" + config_name, config_text));
      json manifest = json::array({{{"Config", config_name},
                                    {"RepoTags", json::array({options.tag})},
                                    {"Layers", layer_names}}});
      return WriteJson(tmp + "/manifest.json", manifest.dump());
    }

    const std::string blobs = tmp + "/blobs/sha256";
    LAYERFS_RETURN_IF_ERROR(MakeDirs(blobs, 0755));
    json descriptors = json::array();
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& l = layers[i];
      const LayerSpec& spec = base.layers[i];
      if (spec.blob_digest && !spec.media_type.empty()) {
        // An OCI blob: kept exactly as it was, compressed or not.
        std::string path = blobs + "/" + spec.blob_digest->hex();
        if (::lstat(path.c_str(), &st) != 0) {
          LAYERFS_RETURN_IF_ERROR(
              CopyToFile(spec.blob.fd(), spec.blob.offset, spec.blob.length, path));
        }
        descriptors.push_back({{"mediaType", spec.media_type},
                               {"digest", spec.blob_digest->str()},
                               {"size", spec.blob.length}});
      } else {
        std::string path = blobs + "/" + l.index.diff_id().hex();
        if (::lstat(path.c_str(), &st) != 0) {
          LAYERFS_RETURN_IF_ERROR(CopyLayerTar(l, path));
        }
        descriptors.push_back({{"mediaType", LayerMediaType(Compression::kNone)},
                               {"digest", l.index.diff_id().str()},
                               {"size", l.index.tar_size()}});
      }
    }
    std::string new_blob = blobs + "/" + written.blob_digest.hex();
    if (::rename(layer_path.c_str(), new_blob.c_str()) != 0) {
      UniqueFd in(::open(layer_path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!in) return Status::FromErrno(errno, layer_path);
      LAYERFS_RETURN_IF_ERROR(CopyToFile(in.get(), 0, written.blob_size, new_blob));
    }
    descriptors.push_back({{"mediaType", LayerMediaType(options.compression)},
                           {"digest", written.blob_digest.str()},
                           {"size", written.blob_size}});
    LAYERFS_RETURN_IF_ERROR(WriteJson(blobs + "/" + config_digest.hex(), config_text));
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                 {"digest", config_digest.str()},
                                 {"size", config_text.size()}}},
                     {"layers", descriptors}};
    const std::string manifest_text = manifest.dump();
    const Digest manifest_digest = Sha256::Of(manifest_text.data(), manifest_text.size());
    LAYERFS_RETURN_IF_ERROR(WriteJson(blobs + "/" + manifest_digest.hex(), manifest_text));
    json descriptor = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                       {"digest", manifest_digest.str()},
                       {"size", manifest_text.size()}};
    if (!options.tag.empty()) {
      descriptor["annotations"] = {{"org.opencontainers.image.ref.name", options.tag}};
    }
    json index = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.oci.image.index.v1+json"},
                  {"manifests", json::array({descriptor})}};
    LAYERFS_RETURN_IF_ERROR(WriteJson(tmp + "/index.json", index.dump()));
    return WriteJson(tmp + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  };
  Status s = write_all();
  if (s.ok() && ::rename(tmp.c_str(), out.c_str()) != 0) {
    s = Status::FromErrno(errno, "cannot rename " + tmp + " to " + out);
  }
  if (!s.ok()) {
    UniqueFd dir(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) (void)RemoveContents(dir.get(), tmp);
    ::rmdir(tmp.c_str());
  }
  return s;
}

}  // namespace layerfs
