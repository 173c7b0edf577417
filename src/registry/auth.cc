#include "registry/auth.h"

#include <openssl/evp.h>

#include <cctype>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/file_util.h"

namespace layerfs {

Result<Credentials> ParseCreds(std::string_view creds) {
  size_t colon = creds.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::Invalid("--creds: give USER:PASSWORD");
  }
  return Credentials{std::string(creds.substr(0, colon)), std::string(creds.substr(colon + 1)),
                     "--creds"};
}

std::vector<std::string> DefaultAuthFiles() {
  std::vector<std::string> files;
  if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) files.push_back(f);
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r && *r) {
    files.push_back(std::string(r) + "/containers/auth.json");
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    files.push_back(std::string(home) + "/.config/containers/auth.json");
    files.push_back(std::string(home) + "/.docker/config.json");
  }
  return files;
}

namespace {

// "https://host:port/v1/" -> "host:port"; "host/repo" stays.
std::string KeyOf(std::string key) {
  for (std::string_view scheme : {"https://", "http://"}) {
    if (key.rfind(scheme, 0) == 0) {
      key.erase(0, scheme.size());
      size_t slash = key.find('/');
      if (slash != std::string::npos) key.resize(slash);  // a URL names the host only
      break;
    }
  }
  while (!key.empty() && key.back() == '/') key.pop_back();
  return key;
}

bool SameRegistry(const std::string& host, const std::string& registry) {
  if (host == registry) return true;
  auto hub = [](const std::string& h) {
    return h == "docker.io" || h == "index.docker.io" || h == "registry-1.docker.io";
  };
  return hub(host) && hub(registry);
}

}  // namespace

Result<std::optional<Credentials>> CredentialsFromAuthFile(const std::string& path,
                                                           const std::string& registry,
                                                           const std::string& repository,
                                                           bool required) {
  auto text = ReadSmallFile(path, 4 << 20);
  if (!text.ok()) {
    if (!required && text.status().code() == ENOENT) return std::optional<Credentials>();
    return text.status().WithContext("auth file");
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Invalid(path + ": auth file is not valid JSON");
  }
  auto auths = j.find("auths");
  if (auths == j.end() || !auths->is_object()) return std::optional<Credentials>();
  const nlohmann::json* best = nullptr;
  size_t best_length = 0;
  for (auto it = auths->begin(); it != auths->end(); ++it) {
    std::string key = KeyOf(it.key());
    size_t slash = key.find('/');
    std::string host = key.substr(0, slash);
    if (!SameRegistry(host, registry)) continue;
    if (slash != std::string::npos) {
      std::string repo = key.substr(slash + 1);  // HOST/NAMESPACE matches repositories below it
      if (repository != repo && repository.rfind(repo + "/", 0) != 0) continue;
    }
    if (best == nullptr || key.size() > best_length) {
      best = &it.value();
      best_length = key.size();
    }
  }
  if (best == nullptr || !best->is_object()) return std::optional<Credentials>();
  auto auth = best->find("auth");
  if (auth == best->end() || !auth->is_string() || auth->get<std::string>().empty()) {
    return std::optional<Credentials>();  // a credential helper's entry: not read here
  }
  auto decoded = Base64Decode(auth->get<std::string>());
  size_t colon = decoded ? decoded->find(':') : std::string::npos;
  if (colon == std::string::npos) {
    return Status::Invalid(path + ": the \"auth\" entry for " + registry +
                           " is not base64 of USER:PASSWORD");
  }
  return std::optional<Credentials>(
      Credentials{decoded->substr(0, colon), decoded->substr(colon + 1), path});
}

std::optional<Challenge> ParseChallenge(std::string_view h) {
  size_t i = 0;
  auto skip_space = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t')) ++i;
  };
  skip_space();
  Challenge c;
  while (i < h.size() && std::isalpha(static_cast<unsigned char>(h[i]))) {
    c.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(h[i++])));
  }
  if (c.scheme.empty()) return std::nullopt;
  for (;;) {
    skip_space();
    while (i < h.size() && h[i] == ',') ++i;
    skip_space();
    if (i >= h.size()) break;
    std::string key;
    while (i < h.size() && h[i] != '=' && h[i] != ',' && h[i] != ' ') {
      key += static_cast<char>(std::tolower(static_cast<unsigned char>(h[i++])));
    }
    skip_space();
    if (i >= h.size() || h[i] != '=') return std::nullopt;
    ++i;
    skip_space();
    std::string value;
    if (i < h.size() && h[i] == '"') {
      ++i;
      while (i < h.size() && h[i] != '"') {
        if (h[i] == '\\' && i + 1 < h.size()) ++i;
        value += h[i++];
      }
      if (i >= h.size()) return std::nullopt;  // unterminated
      ++i;
    } else {
      while (i < h.size() && h[i] != ',' && h[i] != ' ') value += h[i++];
    }
    if (key.empty()) return std::nullopt;
    c.params[key] = value;
  }
  return c;
}

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  std::string in(text);
  while (!in.empty() && (in.back() == '\n' || in.back() == '\r' || in.back() == ' ')) in.pop_back();
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out(in.size() / 4 * 3 + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  size_t size = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) --size;
  out.resize(size);
  return out;
}

}  // namespace layerfs
