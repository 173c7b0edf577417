#include "fuse/filesystem.h"

#include <sys/stat.h>

#include <new>
#include <utility>

#include "base/log.h"

namespace layerfs {

Filesystem::Filesystem(const MergedTree& tree, FsOptions options, WritableTree* writable)
    : tree_(tree),
      options_(options),
      ids_mapped_(!options_.uid_map.identity() || !options_.gid_map.identity()),
      writable_(writable),
      nlookup_(static_cast<uint64_t*>(std::calloc(tree.node_count() + 1, sizeof(uint64_t)))) {
  if (!nlookup_) throw std::bad_alloc();
}

bool Filesystem::Forget(uint32_t node, uint64_t count) {
  std::atomic_ref<uint64_t> n = Count(node);
  uint64_t current = n.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t next = current >= count ? current - count : 0;
    if (n.compare_exchange_weak(current, next, std::memory_order_relaxed)) {
      return current >= count;
    }
  }
}

}  // namespace layerfs
