#include "base/path.h"

#include <cstdio>

namespace layerfs {

Result<std::string> NormalizePath(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (out.empty()) {
        return Status::Invalid("path \"" + Printable(path) + "\" leaves the image root");
      }
      size_t slash = out.rfind('/');
      out.resize(slash == std::string::npos ? 0 : slash);
      continue;
    }
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

std::vector<std::string_view> SplitPath(std::string_view normalized) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos < normalized.size()) {
    size_t end = normalized.find('/', pos);
    if (end == std::string_view::npos) end = normalized.size();
    parts.push_back(normalized.substr(pos, end - pos));
    pos = end + 1;
  }
  return parts;
}

std::pair<std::string_view, std::string_view> SplitParent(std::string_view normalized) {
  size_t slash = normalized.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), normalized};
  return {normalized.substr(0, slash), normalized.substr(slash + 1)};
}

std::string Printable(std::string_view path, size_t max) {
  std::string out;
  for (unsigned char c : path) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace layerfs
