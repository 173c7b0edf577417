// Normalising paths found in layer tars, the only way a tar path reaches the index.
#ifndef LAYERFS_BASE_PATH_H_
#define LAYERFS_BASE_PATH_H_

#include <string>
#include <string_view>
#include <vector>

#include "layerfs/status.h"

namespace layerfs {

// The longest name of one path component, as on Linux local filesystems (NAME_MAX).
inline constexpr size_t kNameMax = 255;

// Normalises a tar entry path to components joined by '/', with no leading or trailing '/':
// a leading '/' is dropped (tar entries are relative to the root), empty ("//") and "." components
// are dropped, ".." removes the component before it. A ".." that would climb above the root is an
// error: the entry names something outside the image. The root itself normalises to "".
Result<std::string> NormalizePath(std::string_view path);

// Splits a normalised path into its components ("" gives none).
std::vector<std::string_view> SplitPath(std::string_view normalized);

// "a/b/c" -> {"a/b", "c"}; "c" -> {"", "c"}.
std::pair<std::string_view, std::string_view> SplitParent(std::string_view normalized);

// A path made safe for one line of an error message: control characters escaped, long paths cut.
std::string Printable(std::string_view path, size_t max = 200);

}  // namespace layerfs

#endif  // LAYERFS_BASE_PATH_H_
