// layerfs index push IMAGE: the layer indexes of a registry image, published beside it.
#include "base/log.h"
#include "cli/commands.h"
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
  auto image = OpenImage(args.image);
  if (!image.ok()) return Fail(image.status());
  auto artifact = BuildIndexArtifact(**image, kDefaultChunkSize);
  if (!artifact.ok()) return Fail(artifact.status());
  auto client = RegistryClient::Connect(*name, args.image.registry);
  if (!client.ok()) return Fail(client.status());
  auto tag = PublishIndexArtifact(**client, (*image)->spec, *artifact);
  if (!tag.ok()) return Fail(tag.status());
  uint64_t bytes = 0;
  for (const ArtifactBlob& b : artifact->blobs) bytes += b.data.size();
  if (LogEnabled(LogLevel::kWarning)) {  // all but -q
    fmt::print("{}: the indexes of {} of its {} layers ({} bytes) published as {}{}\n",
               name->str(), artifact->layers, (*image)->layers.size(), bytes,
               artifact->digest.str(),
               tag->empty() ? " (the registry lists it as a referrer)"
                            : ", listed under the tag " + *tag);
  }
  return 0;
}

}  // namespace layerfs
