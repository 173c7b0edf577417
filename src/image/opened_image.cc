#include "image/opened_image.h"

#include "base/log.h"

namespace layerfs {

Result<std::unique_ptr<OpenedImage>> OpenImage(const ImageArgs& args, IndexProgress progress) {
  const auto start = Clock::now();
  auto opened = std::make_unique<OpenedImage>();
  LoadOptions load;
  load.ref = args.ref;
  load.platform = args.platform;
  LAYERFS_ASSIGN_OR_RETURN(opened->spec, LoadImage(args.image, load));
  LogDebug("manifests read: {:.1f} ms", MsSince(start));

  LayerStore store(args.cache.empty() ? LayerStore::DefaultDir() : args.cache);
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
