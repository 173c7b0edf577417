#include "oci/image_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_util.h"
#include "base/path.h"
#include "tar/archive_members.h"

namespace layerfs {

Result<std::string> ImageSource::ReadSmall(std::string_view path, size_t max_size) const {
  LAYERFS_ASSIGN_OR_RETURN(BlobRange range, Open(path));
  if (range.length > max_size) {
    return Status::Invalid(range.name + ": too large (" + std::to_string(range.length) +
                           " bytes, limit " + std::to_string(max_size) + ")");
  }
  std::string data(range.length, '\0');
  LAYERFS_RETURN_IF_ERROR(PreadFully(range.fd(), data.data(), data.size(), range.offset,
                                     range.name));
  return data;
}

namespace {

class DirectorySource : public ImageSource {
 public:
  DirectorySource(UniqueFd dir, std::string location)
      : dir_(std::move(dir)), location_(std::move(location)) {}

  Result<BlobRange> Open(std::string_view path) const override {
    std::string p(path);
    // O_NONBLOCK: a FIFO named as a blob must be refused, not waited on. It means nothing for
    // the regular files that are accepted.
    int fd = OpenBeneath(dir_.get(), p, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
      if (errno == EXDEV) return Status::Error(EXDEV, Describe(path) + ": points outside the image");
      if (errno == ELOOP) {
        return Status::Error(ELOOP, Describe(path) + ": too many levels of symbolic links");
      }
      return Status::FromErrno(errno, Describe(path));
    }
    return WholeFileRange(UniqueFd(fd), Describe(path));
  }

  bool Exists(std::string_view path) const override {
    UniqueFd fd(OpenBeneath(dir_.get(), std::string(path), O_PATH));
    return fd.valid();
  }

  std::string Describe(std::string_view path) const override {
    std::string out = location_;
    if (!out.empty() && out.back() != '/') out += '/';
    out += path;
    return Printable(out, 400);
  }

  const std::string& location() const override { return location_; }

 private:
  UniqueFd dir_;
  std::string location_;
};

class ArchiveSource : public ImageSource {
 public:
  ArchiveSource(std::shared_ptr<UniqueFd> file, FileIdentity identity, std::string location,
                std::vector<ArchiveMember> members)
      : file_(std::move(file)), identity_(identity), location_(std::move(location)) {
    for (auto& m : members) {
      std::string path = m.path;
      members_[path] = std::move(m);  // a later member of the same path replaces the earlier
    }
  }

  Result<BlobRange> Open(std::string_view path) const override {
    auto normalized = NormalizePath(path);
    if (!normalized.ok()) return Status::Error(EXDEV, Describe(path) + ": points outside the image");
    std::string current = *normalized;
    // Follow links between members (docker save links duplicate layers to one copy).
    for (int hops = 0; hops < 16; ++hops) {
      auto it = members_.find(current);
      if (it == members_.end()) return Status::NotFound(Describe(path) + ": not in the archive");
      const ArchiveMember& m = it->second;
      switch (m.kind) {
        case ArchiveMember::Kind::kFile: {
          BlobRange range;
          range.file = file_;
          range.offset = m.offset;
          range.length = m.size;
          range.name = Describe(path);
          range.identity = identity_;
          return range;
        }
        case ArchiveMember::Kind::kHardlink:
          current = m.link;
          continue;
        case ArchiveMember::Kind::kSymlink: {
          if (!m.link.empty() && m.link[0] == '/') {
            return Status::Error(EXDEV, Describe(path) + ": points outside the image");
          }
          auto [dir, base] = SplitParent(current);
          auto next = NormalizePath(std::string(dir) + "/" + m.link);
          if (!next.ok()) return Status::Error(EXDEV, Describe(path) + ": points outside the image");
          current = *next;
          continue;
        }
        default:
          return Status::Invalid(Describe(path) + ": not a regular file");
      }
    }
    return Status::Error(ELOOP, Describe(path) + ": too many links");
  }

  bool Exists(std::string_view path) const override { return Open(path).ok(); }

  std::string Describe(std::string_view path) const override {
    return Printable(location_ + ":" + std::string(path), 400);
  }

  const std::string& location() const override { return location_; }

 private:
  std::shared_ptr<UniqueFd> file_;
  FileIdentity identity_;
  std::string location_;
  std::unordered_map<std::string, ArchiveMember> members_;
};

}  // namespace

Result<std::unique_ptr<ImageSource>> ImageSource::OpenDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, dir);
  return std::unique_ptr<ImageSource>(new DirectorySource(UniqueFd(fd), dir));
}

Result<std::unique_ptr<ImageSource>> ImageSource::OpenArchive(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Status::FromErrno(errno, file);
  auto shared = std::make_shared<UniqueFd>(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, file);
  if (!S_ISREG(st.st_mode)) return Status::Invalid(file + ": not a regular file");
  LAYERFS_ASSIGN_OR_RETURN(auto members, ListArchiveMembers(fd, file));
  return std::unique_ptr<ImageSource>(
      new ArchiveSource(std::move(shared), FileIdentity::Of(st), file, std::move(members)));
}

}  // namespace layerfs
