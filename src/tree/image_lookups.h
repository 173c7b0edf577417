// The kernel's lookup counts of the inodes of an image, by node: one counter per inode node,
// allocated zeroed and untouched until an inode is first looked up (a million-entry image costs
// nothing until it is walked). Safe from any thread.
#ifndef LAYERFS_TREE_IMAGE_LOOKUPS_H_
#define LAYERFS_TREE_IMAGE_LOOKUPS_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace layerfs {

class ImageLookups {
 public:
  explicit ImageLookups(uint32_t nodes)
      : counts_(static_cast<uint64_t*>(std::calloc(size_t{nodes} + 1, sizeof(uint64_t)))) {
    if (!counts_) throw std::bad_alloc();
  }

  void Add(uint32_t node) { Count(node).fetch_add(1, std::memory_order_relaxed); }
  // Gives back `count`; the count left. `underflow` is set if the kernel forgot more than it
  // looked up (the count stays at 0).
  uint64_t Forget(uint32_t node, uint64_t count, bool* underflow) {
    std::atomic_ref<uint64_t> n = Count(node);
    uint64_t current = n.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t next = current >= count ? current - count : 0;
      if (n.compare_exchange_weak(current, next, std::memory_order_relaxed)) {
        *underflow = current < count;
        return next;
      }
    }
  }
  uint64_t Get(uint32_t node) const { return Count(node).load(std::memory_order_relaxed); }

 private:
  struct Free {
    void operator()(uint64_t* p) const { std::free(p); }
  };
  std::atomic_ref<uint64_t> Count(uint32_t node) const {
    return std::atomic_ref<uint64_t>(counts_.get()[node]);
  }

  std::unique_ptr<uint64_t, Free> counts_;
};

}  // namespace layerfs

#endif  // LAYERFS_TREE_IMAGE_LOOKUPS_H_
