#include "index/layer_reader.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace layerfs {

size_t PlanRead(const Layer& layer, const IndexEntry& e, uint64_t offset, size_t size,
                std::vector<ReadSegment>* out) {
  if (offset >= e.size || size == 0) return 0;
  const size_t total = static_cast<size_t>(std::min<uint64_t>(size, e.size - offset));
  const uint64_t base = layer.data_offset;
  if (!(e.flags & kFlagSparse)) {
    out->push_back({base + e.data + offset, total, false});
    return total;
  }
  const LayerIndex& ix = layer.index;
  const uint64_t runs = ix.sparse_run_count(e);
  // First run that ends after `offset` (runs are in logical order).
  uint64_t lo = 0, hi = runs;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    SparseRunView r = ix.sparse_run(e, mid);
    if (r.logical + r.length <= offset) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  uint64_t pos = offset;
  const uint64_t end = offset + total;
  for (uint64_t k = lo; k < runs && pos < end; ++k) {
    SparseRunView r = ix.sparse_run(e, k);
    if (r.logical > pos) {
      size_t gap = static_cast<size_t>(std::min(r.logical, end) - pos);
      out->push_back({0, gap, true});
      pos += gap;
      if (pos >= end) break;
    }
    size_t n = static_cast<size_t>(std::min(r.logical + r.length, end) - pos);
    out->push_back({base + r.physical + (pos - r.logical), n, false});
    pos += n;
  }
  if (pos < end) out->push_back({0, static_cast<size_t>(end - pos), true});
  return total;
}

Result<size_t> ReadEntry(const Layer& layer, const IndexEntry& e, uint64_t offset, char* buf,
                         size_t size) {
  std::vector<ReadSegment> segments;
  size_t total = PlanRead(layer, e, offset, size, &segments);
  char* p = buf;
  for (const ReadSegment& s : segments) {
    if (s.hole) {
      std::memset(p, 0, s.length);
    } else {
      size_t done = 0;
      while (done < s.length) {
        ssize_t n = ::pread(layer.data_file->get(), p + done, s.length - done,
                            static_cast<off_t>(s.pos + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Status::FromErrno(errno, "read " + layer.label);
        if (n == 0) return Status::Corrupt(layer.label + ": blob is shorter than its index");
        done += static_cast<size_t>(n);
      }
    }
    p += s.length;
  }
  return total;
}

}  // namespace layerfs
