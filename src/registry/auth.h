// Registry credentials, found as podman finds them, and the challenges registries send.
#ifndef LAYERFS_REGISTRY_AUTH_H_
#define LAYERFS_REGISTRY_AUTH_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layerfs/status.h"

namespace layerfs {

struct Credentials {
  std::string user;
  std::string password;
  std::string from;  // where they were found, for messages: "--creds", "/root/.docker/config.json"
};

// Parses --creds USER:PASSWORD.
Result<Credentials> ParseCreds(std::string_view creds);

// The auth files podman reads, in its order: $REGISTRY_AUTH_FILE,
// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, ~/.docker/config.json.
std::vector<std::string> DefaultAuthFiles();

// The credentials for `registry` (HOST[:PORT]) and `repository` in the auth file `path`
// ({"auths": {KEY: {"auth": base64("user:password")}}}); KEY is HOST, HOST/REPO (the longest
// match wins), or a URL of the host. Nothing for a missing file unless `required`.
Result<std::optional<Credentials>> CredentialsFromAuthFile(const std::string& path,
                                                           const std::string& registry,
                                                           const std::string& repository,
                                                           bool required);

// A WWW-Authenticate challenge: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
struct Challenge {
  std::string scheme;  // lower case: "bearer", "basic"
  std::map<std::string, std::string> params;
};
std::optional<Challenge> ParseChallenge(std::string_view header);

std::string Base64Encode(std::string_view data);
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace layerfs

#endif  // LAYERFS_REGISTRY_AUTH_H_
