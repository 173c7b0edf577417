// RegistryClient: the OCI distribution API (v2) of one repository, over libcurl.
//
// It finds how to reach the registry once (GET /v2/: HTTPS, or plain HTTP when TLS verification is
// off and HTTPS fails, as podman does), authenticates as the registry asks (anonymous, HTTP basic,
// or a bearer token from the realm of its challenge, renewed when it expires or is refused), and
// retries what may pass (connection errors, 429, 5xx) a bounded number of times with backoff.
// Manifests and blobs it returns are checked against their digests. Credentials appear in no
// message. Safe to use from several threads: each request takes a libcurl handle of its own from
// a pool, which keeps its connection to the registry for the next request.
#ifndef LAYERFS_REGISTRY_REGISTRY_CLIENT_H_
#define LAYERFS_REGISTRY_REGISTRY_CLIENT_H_

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "layerfs/digest.h"
#include "layerfs/status.h"
#include "registry/auth.h"
#include "registry/curl_api.h"
#include "registry/image_name.h"

namespace layerfs {

struct RegistryOptions {
  std::string creds;     // --creds USER:PASSWORD
  std::string authfile;  // --authfile FILE; else podman's auth files
  std::string cert_dir;  // --cert-dir DIR: *.crt CAs, *.cert/*.key client certificate
  bool tls_verify = true;
  // Read layers lazily through indexes published beside the image, where there are any (commit
  // and index push need whole blobs and turn it off).
  bool lazy = true;
  // Look for published indexes even when not lazy (to count them: mount --push-index).
  bool find_indexes = false;
  long connect_timeout_s = 10;
  long stall_timeout_s = 30;  // a transfer that moves no byte for this long fails
  // A read of a lazy layer's data not fetched yet (a Range request, with its retries) fails
  // after this long without the bytes (mount --read-timeout).
  long read_timeout_s = 30;
  int retries = 3;
};

// The media types a manifest request accepts, most specific first.
extern const char* const kManifestAccept;

struct FetchedManifest {
  std::string body;
  std::string media_type;  // the response's Content-Type
  Digest digest;           // of `body`, checked against the reference or Docker-Content-Digest
};

class RegistryClient {
 public:
  // Reaches the registry of `name` and authenticates for pulling from its repository. Errors
  // (unknown host, refused connection, TLS, bad credentials) name the image.
  static Result<std::unique_ptr<RegistryClient>> Connect(const ImageName& name,
                                                         const RegistryOptions& options);
  ~RegistryClient();

  // GET /v2/REPO/manifests/REFERENCE (a tag or a digest).
  Result<FetchedManifest> GetManifest(const std::string& reference);
  // A blob of at most `max_size` bytes, whole (configs). The caller checks its digest.
  Result<std::string> GetBlob(const Digest& digest, size_t max_size);
  // Streams a blob to `sink`; `restart` is called before a retry begins it again.
  using Sink = std::function<Status(const char* data, size_t size)>;
  Status FetchBlob(const Digest& digest, const Sink& sink, const std::function<void()>& restart);

  // Bytes [offset, offset + length) of a blob, by an HTTP Range request.
  Result<std::string> FetchRange(const Digest& digest, uint64_t offset, uint64_t length);
  // A manifest that may be missing: none for a 404.
  Result<std::optional<FetchedManifest>> FindManifest(const std::string& reference);
  // GET /v2/REPO/referrers/DIGEST?artifactType=TYPE: the image index of the manifests that refer
  // to DIGEST, or none where the registry has no referrers API.
  Result<std::optional<std::string>> Referrers(const Digest& digest, const std::string& type);
  // Uploads a blob unless the repository has it (monolithic upload: POST, then PUT ?digest=).
  Status PushBlob(const Digest& digest, std::string_view data);
  // PUT /v2/REPO/manifests/REFERENCE. Returns whether the registry said it indexed the manifest's
  // subject itself (the OCI-Subject header of the referrers API).
  Result<bool> PushManifest(const std::string& reference, std::string_view body,
                            const std::string& media_type);

  // "docker://HOST/REPO", for messages.
  const std::string& name() const { return display_; }
  // "https" or "http": how the registry was reached.
  const std::string& scheme() const { return scheme_; }

 private:
  struct Response {
    long status = 0;  // 0: no response; `curl_code` and `body` say why
    CURLcode curl_code = CURLE_OK;
    std::string body;  // error bodies always; others when no sink is given
    std::string content_type;
    std::string docker_digest;
    std::string www_authenticate;
    std::string location;     // of an upload
    std::string oci_subject;  // the registry indexed a pushed manifest's subject
    long retry_after_s = -1;
    bool too_large = false;
  };
  struct Transfer;

  RegistryClient(const CurlApi* curl, const ImageName& name, const RegistryOptions& options);
  Status Init();
  std::string Url(const std::string& path) const;
  // One HTTP GET; a transport error is a Status, an HTTP status is in the Response.
  // `method` is GET, HEAD, POST or PUT (the last two send `body`).
  Result<Response> Perform(const std::string& url, const std::vector<std::string>& headers,
                           const Sink* sink, size_t max_body, bool with_auth,
                           const char* method = "GET", std::string_view body = {},
                           long timeout_ms = 0);
  // A request to the registry (a path, or an absolute URL it gave) with auth, renewal and
  // retries; statuses other than 2xx become errors, except those in `allowed`.
  struct Call {
    const char* method = "GET";
    std::string path;
    std::vector<std::string> headers;
    std::string_view body;
    const Sink* sink = nullptr;
    size_t max_body = 0;
    std::string what;
    std::function<void()> restart;
    std::vector<long> allowed;
    // Attempts and the waits between them end by this time (none: each attempt is bounded by
    // the stall timeout alone).
    std::optional<std::chrono::steady_clock::time_point> deadline;
  };
  Result<Response> Send(const Call& call);
  Result<Response> Get(const std::string& path, const std::string& accept, const Sink* sink,
                       size_t max_body, const std::string& what,
                       const std::function<void()>& restart = nullptr);
  // Answers a challenge: a new Authorization. REQUIRES: auth_mu_ held.
  Status Authenticate(const std::string& www_authenticate);
  // Authenticate, unless another thread already replaced `failed`, the Authorization refused.
  Status Reauthenticate(const std::string& www_authenticate, const std::string& failed);
  Status HttpError(const Response& r, const std::string& what) const;
  std::string Authorization() const;
  CURL* TakeHandle();
  void ReturnHandle(CURL* easy);

  const CurlApi* curl_;
  mutable std::mutex mu_;  // the handles and the Authorization below
  std::mutex auth_mu_;     // one authentication at a time
  std::vector<CURL*> idle_;
  std::string host_;
  std::string repository_;
  std::string display_;
  RegistryOptions options_;
  std::string scheme_ = "https";
  std::optional<Credentials> creds_;
  std::string authorization_;  // the Authorization header's value, if any
  std::string challenge_;      // the last WWW-Authenticate, to renew a token
  std::optional<std::chrono::steady_clock::time_point> token_expiry_;
  std::string ca_bundle_;  // PEM: the system's CAs and --cert-dir's
  std::string client_cert_, client_key_;
};

}  // namespace layerfs

#endif  // LAYERFS_REGISTRY_REGISTRY_CLIENT_H_
