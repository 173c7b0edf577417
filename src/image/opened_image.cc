#include "image/opened_image.h"

#include "base/log.h"
#include "registry/image_name.h"
#include "registry/registry_image.h"

namespace layerfs {

namespace {

std::string CacheDir(const ImageArgs& args) {
  return args.cache.empty() ? LayerStore::DefaultDir() : args.cache;
}

}  // namespace

Result<ImageSpec> LoadNamedImage(const ImageArgs& args) {
  LAYERFS_ASSIGN_OR_RETURN(ImageName name, ParseImageName(args.image));
  LoadOptions load;
  load.ref = args.ref;
  load.platform = args.platform;
  if (!name.ref.empty()) {
    if (!args.ref.empty() && args.ref != name.ref) {
      return Status::Invalid(args.image + ": names the image \"" + name.ref + "\", --ref \"" +
                             args.ref + "\"");
    }
    load.ref = name.ref;
  }
  using T = ImageName::Transport;
  if (name.transport == T::kDocker) {
    if (!args.ref.empty()) {
      return Status::Invalid("--ref does not apply to docker:// images: name the tag or digest "
                             "in the image name");
    }
    return LoadRegistryImage(name, load, args.registry, CacheDir(args));
  }
  LAYERFS_ASSIGN_OR_RETURN(ImageSpec spec, LoadImage(name.path, load));
  // A transport that names the form checks it: "oci:" is an OCI layout directory, and so on.
  const char* want = name.transport == T::kOci             ? "oci-dir"
                     : name.transport == T::kDockerArchive ? "docker-archive"
                     : name.transport == T::kOciArchive    ? "oci-archive"
                                                           : nullptr;
  if (want != nullptr && spec.format != want) {
    return Status::Invalid(args.image + ": is a " + spec.format + " image, not " + want);
  }
  return spec;
}

Result<std::unique_ptr<OpenedImage>> OpenImage(const ImageArgs& args, IndexProgress progress) {
  const auto start = Clock::now();
  auto opened = std::make_unique<OpenedImage>();
  LAYERFS_ASSIGN_OR_RETURN(opened->spec, LoadNamedImage(args));
  LogDebug("manifests read: {:.1f} ms", MsSince(start));

  LayerStore store(CacheDir(args));
  store.set_progress(std::move(progress));
  store.set_span(args.span, args.span_given);
  store.set_span_cache(args.span_cache);
  opened->span_cache = store.span_cache();
  LAYERFS_ASSIGN_OR_RETURN(opened->layers, store.LoadAll(opened->spec.layers, 0, &opened->stats));
  LogDebug("layers loaded: {:.1f} ms", MsSince(start));
  for (const Layer& l : opened->layers) {
    for (const std::string& w : l.warnings) LogWarning("{}: {}", l.label, w);
  }
  LAYERFS_ASSIGN_OR_RETURN(opened->tree, MergedTree::Build(opened->layers));
  for (const std::string& w : opened->tree.warnings()) LogWarning("{}", w);
  opened->ms_to_open = MsSince(start);
  LogDebug("merged tree built: {:.1f} ms, {} nodes, {} KiB", opened->ms_to_open,
           opened->tree.node_count(), opened->tree.memory_bytes() / 1024);
  return opened;
}

}  // namespace layerfs
