// layerfs commit: a scratch directory's changes as a new top layer of the image.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "base/log.h"
#include "cli/commands.h"
#include "commit/commit.h"
#include "scratch/scratch_dir.h"

namespace layerfs {

int RunCommit(const CommitArgs& args) {
  auto start = Clock::now();
  CommitOptions options;
  if (args.format == "oci") {
    options.format = ImageFormat::kOci;
  } else if (args.format == "docker") {
    options.format = ImageFormat::kDocker;
  } else {
    return Fail(Status::Invalid("--format " + args.format + ": expected docker or oci"));
  }
  std::string compress = args.compress;
  if (compress.empty()) compress = options.format == ImageFormat::kOci ? "gzip" : "none";
  if (compress == "none") {
    options.compression = Compression::kNone;
  } else if (compress == "gzip") {
    options.compression = Compression::kGzip;
  } else if (compress == "zstd") {
    options.compression = Compression::kZstd;
  } else {
    return Fail(Status::Invalid("--compress " + compress + ": expected none, gzip or zstd"));
  }
  if (options.format == ImageFormat::kDocker && options.compression != Compression::kNone) {
    return Fail(Status::Invalid("--compress " + compress +
                                ": docker-save layers are uncompressed tars; use --format oci"));
  }
  options.tag = args.tag;
  if (options.tag.empty()) {
    options.tag = options.format == ImageFormat::kOci ? "latest" : "layerfs-commit:latest";
  }
  if (::access(args.out.c_str(), F_OK) == 0) {
    return Fail(Status::Error(EEXIST, args.out + ": already exists; name a new directory for "
                                                 "the image"));
  }

  ImageArgs image_args = args.image;
  image_args.registry.lazy = false;  // the new image holds every layer blob whole
  auto image = OpenImage(image_args);
  if (!image.ok()) return Fail(image.status());
  const OpenedImage& opened = **image;
  std::vector<std::string> layer_ids;
  for (const Layer& l : opened.layers) layer_ids.push_back(l.index.diff_id().str());
  auto scratch = ScratchDir::Open(args.scratch, layer_ids, /*create=*/false);
  if (!scratch.ok()) return Fail(scratch.status());

  // The new layer's blob, beside OUT so that it can be renamed into place.
  const std::string layer_path = args.out + ".layer-" + std::to_string(::getpid());
  RemoveStaleCommitFiles(args.out);
  UniqueFd fd(::open(layer_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return Fail(Status::FromErrno(errno, layer_path));
  (void)::flock(fd.get(), LOCK_EX | LOCK_NB);  // see RemoveStaleCommitFiles
  auto cleanup = [&] { ::unlink(layer_path.c_str()); };
  auto writer = LayerWriter::Create(fd.get(), options.compression);
  if (!writer.ok()) {
    cleanup();
    return Fail(writer.status());
  }
  auto stats = WriteScratchLayer(scratch->upper_fd(), opened.tree, writer->get());
  if (!stats.ok()) {
    cleanup();
    return Fail(Status::Error(stats.status().code(), args.scratch + "/" + stats.status().message()));
  }
  auto written = (*writer)->Finish();
  if (written.ok() && ::fsync(fd.get()) != 0) written = Status::FromErrno(errno, layer_path);
  if (!written.ok()) {
    cleanup();
    return Fail(written.status());
  }
  Status s = WriteCommittedImage(opened.spec, opened.layers, layer_path, *written, options,
                                 args.out);
  cleanup();
  if (!s.ok()) return Fail(s);
  if (LogEnabled(LogLevel::kWarning)) {  // all but -q
    fmt::print("{}: {} image, the {} layers of {} + layer {} {} ({} bytes{}): {} entries, {} of "
               "them whiteouts, in {:.0f} ms\n",
               args.out, args.format == "oci" ? "OCI" : "docker-save", opened.layers.size(),
               args.image.image, opened.layers.size() + 1, written->blob_digest.str(),
               written->blob_size, compress == "none" ? "" : ", " + compress, stats->entries,
               stats->whiteouts, MsSince(start));
  }
  return 0;
}

}  // namespace layerfs
