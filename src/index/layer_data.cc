#include "index/layer_data.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace layerfs {
namespace {

Status ReadSegmentOf(const Layer& layer, const ReadSegment& s, char* out) {
  if (s.pos > layer.data->size() || s.length > layer.data->size() - s.pos) {
    return Status::Corrupt(layer.label + ": blob is shorter than its index");
  }
  return layer.data->ReadAt(s.pos, out, s.length).WithContext(layer.label);
}

}  // namespace

size_t PlanRead(const Layer& layer, const IndexEntry& e, uint64_t offset, size_t size,
                std::vector<ReadSegment>* out) {
  if (offset >= e.size || size == 0) return 0;
  const size_t total = static_cast<size_t>(std::min<uint64_t>(size, e.size - offset));
  if (!(e.flags & kFlagSparse)) {
    out->push_back({e.data + offset, total, false});
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
    out->push_back({r.physical + (pos - r.logical), n, false});
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
      LAYERFS_RETURN_IF_ERROR(ReadSegmentOf(layer, s, p));
    }
    p += s.length;
  }
  return total;
}

Result<uint64_t> SeekEntry(const LayerIndex& ix, const IndexEntry& e, uint64_t pos, int whence) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return Status::Error(EINVAL, "lseek");
  if (pos >= e.size) return Status::Error(ENXIO, "lseek");
  if (!(e.flags & kFlagSparse)) return whence == SEEK_DATA ? pos : e.size;
  const uint64_t runs = ix.sparse_run_count(e);
  for (uint64_t k = 0; k < runs; ++k) {
    SparseRunView r = ix.sparse_run(e, k);
    if (r.logical + r.length <= pos) continue;
    if (whence == SEEK_DATA) return std::max(pos, r.logical);
    if (r.logical > pos) return pos;
    // Inside this run: the hole starts where the data stops being contiguous.
    uint64_t end = r.logical + r.length;
    while (k + 1 < runs && ix.sparse_run(e, k + 1).logical == end) {
      ++k;
      end += ix.sparse_run(e, k).length;
    }
    return end;
  }
  if (whence == SEEK_DATA) return Status::Error(ENXIO, "lseek");
  return pos;
}

Status CopyEntry(const Layer& layer, const IndexEntry& e, int out) {
  std::vector<ReadSegment> segments;
  uint64_t logical = 0;
  while (logical < e.size) {
    segments.clear();
    if (PlanRead(layer, e, logical, 64u << 20, &segments) == 0) break;
    for (const ReadSegment& seg : segments) {
      // Holes stay holes: the file is only extended over them.
      if (!seg.hole) {
        LAYERFS_RETURN_IF_ERROR(
            CopySource(*layer.data, seg.pos, seg.length, out, logical).WithContext(layer.label));
      }
      logical += seg.length;
    }
  }
  if (::ftruncate(out, static_cast<off_t>(e.size)) != 0)
    return Status::FromErrno(errno, "truncate");
  return Status::Ok();
}

}  // namespace layerfs
