#include "registry/image_name.h"

#include <algorithm>
#include <cctype>

#include "base/path.h"

namespace layerfs {
namespace {

constexpr std::string_view kDockerHub = "docker.io";

bool IsAlnumLower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component of a repository: [a-z0-9]+ joined by one of "._-" runs ("__" and "-"s).
bool ValidComponent(std::string_view c) {
  if (c.empty() || !IsAlnumLower(c.front()) || !IsAlnumLower(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (IsAlnumLower(ch) || ch == '-') continue;
    if (ch == '.' || ch == '_') {
      if (!IsAlnumLower(c[i - 1]) && !(ch == '_' && c[i - 1] == '_')) return false;
      continue;
    }
    return false;
  }
  return true;
}

bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    bool word = std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    if (!word && (i == 0 || (c != '.' && c != '-'))) return false;
  }
  return true;
}

bool ValidHost(std::string_view h) {
  if (h.empty()) return false;
  for (char c : h) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
        c != '[' && c != ']') {
      return false;
    }
  }
  return true;
}

Status Bad(std::string_view text, const std::string& why) {
  return Status::Invalid("image name \"" + Printable(std::string(text)) + "\": " + why);
}

Result<ImageName> ParseDocker(std::string_view full, std::string_view rest) {
  ImageName name;
  name.transport = ImageName::Transport::kDocker;
  if (rest.empty()) return Bad(full, "no repository after docker://");
  size_t at = rest.find('@');
  if (at != std::string_view::npos) {
    auto digest = Digest::Parse(std::string(rest.substr(at + 1)));
    if (!digest.ok()) return Bad(full, digest.status().message());
    name.digest = *digest;
    rest = rest.substr(0, at);
  }
  // The first component is a registry host if it looks like one: a dot, a port, or localhost.
  size_t slash = rest.find('/');
  std::string_view first = rest.substr(0, slash);
  if (slash != std::string_view::npos &&
      (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
       first == "localhost")) {
    if (!ValidHost(first)) return Bad(full, "\"" + std::string(first) + "\" is not a host name");
    name.registry = std::string(first);
    rest = rest.substr(slash + 1);
  } else {
    name.registry = std::string(kDockerHub);
  }
  // A tag follows the last ':' after the last '/'.
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    name.tag = std::string(rest.substr(colon + 1));
    if (!ValidTag(name.tag)) return Bad(full, "\"" + name.tag + "\" is not a valid tag");
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return Bad(full, "no repository");
  for (size_t start = 0; start <= rest.size();) {
    size_t end = std::min(rest.find('/', start), rest.size());
    if (!ValidComponent(rest.substr(start, end - start))) {
      return Bad(full, "\"" + std::string(rest) +
                           "\" is not a repository name (lower-case letters, digits and . _ - "
                           "between slashes)");
    }
    start = end + 1;
  }
  if (rest.size() > 255) return Bad(full, "repository name longer than 255 characters");
  name.repository = std::string(rest);
  if (name.registry == kDockerHub && name.repository.find('/') == std::string::npos) {
    name.repository = "library/" + name.repository;
  }
  if (name.tag.empty() && !name.digest) name.tag = "latest";
  return name;
}

}  // namespace

std::string ImageName::api_host() const {
  return registry == kDockerHub ? "registry-1.docker.io" : registry;
}

std::string ImageName::str() const {
  switch (transport) {
    case Transport::kPath:
      return path;
    case Transport::kOci:
      return "oci:" + path + (ref.empty() ? "" : ":" + ref);
    case Transport::kDockerArchive:
      return "docker-archive:" + path + (ref.empty() ? "" : ":" + ref);
    case Transport::kOciArchive:
      return "oci-archive:" + path + (ref.empty() ? "" : ":" + ref);
    case Transport::kDocker:
      break;
  }
  std::string out = "docker://" + registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (digest) out += "@" + digest->str();
  return out;
}

Result<ImageName> ParseImageName(std::string_view text) {
  if (text.empty()) return Status::Invalid("no image named");
  if (text.rfind("docker://", 0) == 0) return ParseDocker(text, text.substr(9));
  static const struct {
    std::string_view prefix;
    ImageName::Transport transport;
  } kLocal[] = {
      {"oci:", ImageName::Transport::kOci},
      {"docker-archive:", ImageName::Transport::kDockerArchive},
      {"oci-archive:", ImageName::Transport::kOciArchive},
  };
  ImageName name;
  for (const auto& t : kLocal) {
    if (text.rfind(t.prefix, 0) != 0) continue;
    std::string_view rest = text.substr(t.prefix.size());
    // As in skopeo: the path ends at the first ':'; what follows picks the image.
    size_t colon = rest.find(':');
    name.transport = t.transport;
    name.path = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) name.ref = std::string(rest.substr(colon + 1));
    if (name.path.empty()) return Bad(text, "no path after " + std::string(t.prefix));
    return name;
  }
  if (text.find("://") != std::string_view::npos) {
    return Bad(text,
               "unknown transport (layerfs reads docker://, oci:, docker-archive:, "
               "oci-archive: and paths)");
  }
  name.path = std::string(text);
  return name;
}

}  // namespace layerfs
