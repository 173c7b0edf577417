// IdMap: how the user and group ids of the image show in a mount, and how ids that come in
// through the mount (the caller of a create, the target of a chown) become ids of the image.
//
// Everything inside layerfs (the merged tree, the scratch directory, a committed layer) speaks of
// the image's ids; only the FUSE adapter translates, at the boundary, with one IdMap for users and
// one for groups. Three kinds:
//  - identity: the ids are shown as they are (the default);
//  - ranges: `-o uidmapping=IMAGE:HOST:COUNT[:IMAGE:HOST:COUNT…]`, the syntax of fuse-overlayfs;
//    an image id outside every range shows as the overflow id (65534, "nobody"), and a host id
//    outside every range has no image id;
//  - self (`--owner=self`): every id of the image shows as one host id (the caller's), and that
//    host id stands for image id 0, so what the caller creates belongs to root in the image.
#ifndef LAYERFS_BASE_ID_MAP_H_
#define LAYERFS_BASE_ID_MAP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layerfs/status.h"

namespace layerfs {

class IdMap {
 public:
  struct Range {
    uint32_t image;
    uint32_t host;
    uint32_t count;
  };
  // What an id without a mapping shows as (the kernel's overflowuid).
  static constexpr uint32_t kOverflowId = 65534;

  IdMap() = default;  // identity
  static IdMap Self(uint32_t host_id);
  // Parses "IMAGE:HOST:COUNT[:IMAGE:HOST:COUNT…]"; `option` names it in errors. Ranges must not
  // overlap on either side, and none may be empty or run past 2^32 - 1.
  static Result<IdMap> Parse(std::string_view spec, std::string_view option);

  bool identity() const { return kind_ == Kind::kIdentity; }
  // Every image id shows as one host id (--owner=self).
  bool squashes() const { return kind_ == Kind::kSelf; }

  // The host id that image id `id` shows as.
  uint32_t ToHost(uint32_t id) const {
    if (kind_ == Kind::kIdentity) return id;
    return ToHostSlow(id);
  }
  // The image id of host id `id`, or nothing when it has none.
  std::optional<uint32_t> ToImage(uint32_t id) const;

  // "identity", "self (1000)", or the ranges as given.
  std::string Describe() const;

 private:
  enum class Kind { kIdentity, kSelf, kRanges };

  uint32_t ToHostSlow(uint32_t id) const;

  Kind kind_ = Kind::kIdentity;
  uint32_t self_ = 0;
  std::vector<Range> ranges_;
};

}  // namespace layerfs

#endif  // LAYERFS_BASE_ID_MAP_H_
