// layerfs index push IMAGE: the layer indexes of a registry image, published beside it.
#include "base/log.h"
#include "blob/checkpoints.h"
#include "cli/commands.h"
#include "cli/mount_options.h"
#include "registry/image_name.h"
#include "registry/index_artifact.h"

namespace layerfs {

int RunIndexPush(const IndexArgs& args) {
  auto name = ParseImageName(args.image.image);
  if (!name.ok()) return Fail(name.status());
  if (!name->remote()) {
    return Fail(Status::Invalid(args.image.image +
                                ": index push publishes to a registry: name a docker:// image"));
  }
  ImageArgs image_args = args.image;
  uint64_t chunk_size = kDefaultChunkSize;
  if (!args.span.empty()) {
    auto n = ParseSize(args.span);
    if (!n || *n < kMinSpan || *n > kMaxSpan) {
      return Fail(Status::Invalid("--span " + args.span + ": expected a size from 64K to 64M"));
    }
    image_args.span = *n;
    image_args.span_given = true;
  }
  if (!args.chunk_size.empty()) {
    auto n = ParseSize(args.chunk_size);
    if (!n || *n < (64u << 10) || *n > (64u << 20)) {
      return Fail(
          Status::Invalid("--chunk-size " + args.chunk_size + ": expected a size from 64K to 64M"));
    }
    chunk_size = *n;
  }
  image_args.registry.lazy = false;  // the chunk digests are of whole blobs
  auto image = OpenImage(image_args);
  if (!image.ok()) return Fail(image.status());
  auto pushed = PushIndexes(*name, args.image.registry, **image, chunk_size);
  if (!pushed.ok()) return Fail(pushed.status());
  if (LogEnabled(LogLevel::kWarning)) fmt::print("{}\n", *pushed);  // all but -q
  return 0;
}

}  // namespace layerfs
