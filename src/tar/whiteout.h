// OCI whiteouts: what a tar entry's base name means for the union (image-spec layer.md).
#ifndef LAYERFS_TAR_WHITEOUT_H_
#define LAYERFS_TAR_WHITEOUT_H_

#include <string_view>

namespace layerfs {

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

enum class NameKind {
  kPlain,     // an ordinary name
  kWhiteout,  // `.wh.NAME`: hides NAME in lower layers; `target` is NAME
  kOpaque,    // `.wh..wh..opq`: the directory it is in hides its lower-layer contents
  kMeta,      // another `.wh..wh.` name (aufs bookkeeping such as `.wh..wh.plnk`): never shown
  kInvalid,   // `.wh.` naming nothing usable (empty, ".", ".."): refused
};

struct ClassifiedName {
  NameKind kind;
  std::string_view target;  // for kWhiteout
};

inline ClassifiedName ClassifyName(std::string_view base) {
  if (base.substr(0, kWhiteoutPrefix.size()) != kWhiteoutPrefix) return {NameKind::kPlain, {}};
  if (base == kOpaqueMarker) return {NameKind::kOpaque, {}};
  std::string_view target = base.substr(kWhiteoutPrefix.size());
  if (target.substr(0, kWhiteoutPrefix.size()) == kWhiteoutPrefix) return {NameKind::kMeta, {}};
  if (target.empty() || target == "." || target == "..") return {NameKind::kInvalid, target};
  return {NameKind::kWhiteout, target};
}

}  // namespace layerfs

#endif  // LAYERFS_TAR_WHITEOUT_H_
