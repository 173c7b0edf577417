#include "registry/registry_client.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_util.h"
#include "base/path.h"
#include "blob/sha256.h"
#include "oci/manifest.h"

namespace layerfs {

const char* const kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

namespace {

using Clock = std::chrono::steady_clock;

// The most of an error response's body kept for its message.
constexpr size_t kMaxErrorBody = 64 << 10;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

bool Retryable(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

// The files of a certificate directory (podman's --cert-dir, /etc/containers/certs.d/HOST).
struct CertDir {
  std::vector<std::string> cas;  // *.crt
  std::string cert, key;         // a *.cert and the *.key of the same name
};

Result<CertDir> ReadCertDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Status::FromErrno(errno, "--cert-dir " + dir);
  std::vector<std::string> names;
  if (ListNames(fd.get(), &names) != 0) return Status::FromErrno(errno, "--cert-dir " + dir);
  std::sort(names.begin(), names.end());
  CertDir out;
  auto ends = [](const std::string& n, std::string_view suffix) {
    return n.size() > suffix.size() &&
           n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const std::string& n : names) {
    if (ends(n, ".crt")) out.cas.push_back(dir + "/" + n);
    if (ends(n, ".cert")) {
      std::string key = n.substr(0, n.size() - 5) + ".key";
      if (std::find(names.begin(), names.end(), key) == names.end()) {
        return Status::Invalid("--cert-dir " + dir + ": " + n + " has no " + key);
      }
      out.cert = dir + "/" + n;
      out.key = dir + "/" + key;
    }
  }
  return out;
}

}  // namespace

struct RegistryClient::Transfer {
  const CurlApi* curl;
  CURL* easy;
  Response* response;
  const Sink* sink;
  size_t max_body;
  Status sink_status = Status::Ok();

  static size_t OnHeader(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string_view line(data, size * count);
    if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect): forget the last's
      Response fresh;
      fresh.body = std::move(t->response->body);
      fresh.body.clear();
      *t->response = std::move(fresh);
      return size * count;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return size * count;
    std::string name = Lower(line.substr(0, colon));
    std::string value = Trim(line.substr(colon + 1));
    Response& r = *t->response;
    if (name == "content-type") r.content_type = value;
    if (name == "docker-content-digest") r.docker_digest = value;
    if (name == "www-authenticate") r.www_authenticate = value;
    if (name == "location") r.location = value;
    if (name == "oci-subject") r.oci_subject = value;
    if (name == "retry-after") {
      char* end = nullptr;
      long s = std::strtol(value.c_str(), &end, 10);
      if (end != value.c_str() && *end == '\0') r.retry_after_s = s;
    }
    return size * count;
  }

  static size_t OnBody(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t n = size * count;
    long code = 0;
    t->curl->easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    const bool ok = code >= 200 && code < 300;
    if (ok && t->sink != nullptr) {
      t->sink_status = (*t->sink)(data, n);
      return t->sink_status.ok() ? n : 0;
    }
    std::string& body = t->response->body;
    const size_t limit = ok ? t->max_body : kMaxErrorBody;
    if (body.size() + n > limit) {
      if (!ok) return n;  // the start of an error body says enough
      t->response->too_large = true;
      return 0;
    }
    body.append(data, n);
    return n;
  }
};

RegistryClient::RegistryClient(const CurlApi* curl, const ImageName& name,
                               const RegistryOptions& options)
    : curl_(curl),
      host_(name.api_host()),
      repository_(name.repository),
      display_("docker://" + name.registry + "/" + name.repository),
      options_(options) {}

RegistryClient::~RegistryClient() {
  for (CURL* e : idle_) curl_->easy_cleanup(e);
}

CURL* RegistryClient::TakeHandle() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      CURL* e = idle_.back();
      idle_.pop_back();
      return e;
    }
  }
  return curl_->easy_init();
}

void RegistryClient::ReturnHandle(CURL* easy) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(easy);
}

std::string RegistryClient::Authorization() const {
  std::lock_guard<std::mutex> lock(mu_);
  return authorization_;
}

Result<std::unique_ptr<RegistryClient>> RegistryClient::Connect(const ImageName& name,
                                                                const RegistryOptions& options) {
  LAYERFS_ASSIGN_OR_RETURN(const CurlApi* curl, Curl());
  std::unique_ptr<RegistryClient> client(new RegistryClient(curl, name, options));
  LAYERFS_RETURN_IF_ERROR(client->Init());
  return client;
}

Status RegistryClient::Init() {
  if (!options_.creds.empty()) {
    LAYERFS_ASSIGN_OR_RETURN(Credentials c, ParseCreds(options_.creds));
    creds_ = std::move(c);
  } else {
    std::vector<std::string> files = options_.authfile.empty()
                                         ? DefaultAuthFiles()
                                         : std::vector<std::string>{options_.authfile};
    for (const std::string& f : files) {
      LAYERFS_ASSIGN_OR_RETURN(
          std::optional<Credentials> c,
          CredentialsFromAuthFile(f, host_ == "registry-1.docker.io" ? "docker.io" : host_,
                                  repository_, !options_.authfile.empty()));
      if (c) {
        creds_ = std::move(c);
        break;
      }
    }
  }

  std::string cert_dir = options_.cert_dir;
  if (cert_dir.empty()) {
    for (const char* base : {"/etc/containers/certs.d/", "/etc/docker/certs.d/"}) {
      struct stat st;
      std::string d = base + host_;
      if (::stat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        cert_dir = d;
        break;
      }
    }
  }
  if (!cert_dir.empty()) {
    LAYERFS_ASSIGN_OR_RETURN(CertDir certs, ReadCertDir(cert_dir));
    if (!certs.cas.empty()) {
      auto system = ReadSmallFile("/etc/ssl/certs/ca-certificates.crt", 16 << 20);
      if (system.ok()) ca_bundle_ = *system + "\n";
      for (const std::string& ca : certs.cas) {
        LAYERFS_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(ca, 1 << 20));
        ca_bundle_ += pem + "\n";
      }
    }
    client_cert_ = certs.cert;
    client_key_ = certs.key;
  }

  // How to reach it: GET /v2/ answers 200, or 401 with the challenge to answer.
  std::lock_guard<std::mutex> lock(auth_mu_);
  LAYERFS_ASSIGN_OR_RETURN(Response ping, Perform(Url("/v2/"), {}, nullptr, kMaxErrorBody, false));
  if (ping.status == 0 && !options_.tls_verify) {
    scheme_ = "http";
    auto plain = Perform(Url("/v2/"), {}, nullptr, kMaxErrorBody, false);
    if (plain.ok() && plain->status != 0) {
      ping = std::move(plain).value();
    } else {
      scheme_ = "https";
    }
  }
  if (ping.status == 0) {
    std::string hint;
    if (ping.body.find("SSL") != std::string::npos || ping.body.find("TLS") != std::string::npos ||
        ping.body.find("certificate") != std::string::npos) {
      hint = options_.tls_verify ? " (a private CA: --cert-dir DIR; a plain-HTTP or self-signed "
                                   "test registry: --tls-verify=false)"
                                 : "";
    }
    return Status::Error(EHOSTUNREACH,
                         display_ + ": cannot reach the registry: " + ping.body + hint);
  }
  if (ping.status == 401) {
    return Authenticate(ping.www_authenticate).WithContext(display_);
  }
  if (ping.status == 404) {
    return Status::NotFound(display_ + ": " + host_ + " does not serve the registry API (/v2/)");
  }
  if (ping.status < 200 || ping.status >= 300) return HttpError(ping, "registry API (/v2/)");
  return Status::Ok();
}

std::string RegistryClient::Url(const std::string& path) const {
  return scheme_ + "://" + host_ + path;
}

Result<RegistryClient::Response> RegistryClient::Perform(const std::string& url,
                                                         const std::vector<std::string>& headers,
                                                         const Sink* sink, size_t max_body,
                                                         bool with_auth, const char* method,
                                                         std::string_view body, long timeout_ms) {
  CURL* e = TakeHandle();
  if (e == nullptr) return Status::Error(ENOMEM, "libcurl: no handle");
  struct Return {
    RegistryClient* client;
    CURL* e;
    ~Return() { client->ReturnHandle(e); }
  } give_back{this, e};
  Response response;
  Transfer t{curl_, e, &response, sink, max_body};
  char error[CURL_ERROR_SIZE] = {};
  curl_slist* list = nullptr;
  for (const std::string& h : headers) list = curl_->slist_append(list, h.c_str());
  const std::string authorization = with_auth ? Authorization() : "";
  if (!authorization.empty()) {
    list = curl_->slist_append(list, ("Authorization: " + authorization).c_str());
  }
  curl_->easy_reset(e);  // keeps the connection, DNS and TLS session caches
  curl_->easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_->easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_->easy_setopt(e, CURLOPT_MAXREDIRS, 8L);
  curl_->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_->easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_->easy_setopt(e, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
  curl_->easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_->easy_setopt(e, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
  if (timeout_ms > 0) curl_->easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_->easy_setopt(e, CURLOPT_USERAGENT, "layerfs");
  curl_->easy_setopt(e, CURLOPT_ERRORBUFFER, error);
  curl_->easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
  curl_->easy_setopt(e, CURLOPT_HEADERDATA, &t);
  curl_->easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::OnBody);
  curl_->easy_setopt(e, CURLOPT_WRITEDATA, &t);
  const std::string_view verb = method;
  if (verb == "HEAD") curl_->easy_setopt(e, CURLOPT_NOBODY, 1L);
  if (verb == "POST" || verb == "PUT") {
    list = curl_->slist_append(list, "Expect:");  // no 100-continue round trip
    curl_->easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
    curl_->easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    if (verb == "PUT") curl_->easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
  }
  if (list != nullptr) curl_->easy_setopt(e, CURLOPT_HTTPHEADER, list);
  if (!options_.tls_verify) {
    curl_->easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_->easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_blob ca{ca_bundle_.data(), ca_bundle_.size(), CURL_BLOB_NOCOPY};
  if (!ca_bundle_.empty()) curl_->easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
  if (!client_cert_.empty()) {
    curl_->easy_setopt(e, CURLOPT_SSLCERT, client_cert_.c_str());
    curl_->easy_setopt(e, CURLOPT_SSLKEY, client_key_.c_str());
  }
  CURLcode rc = curl_->easy_perform(e);
  curl_->easy_setopt(e, CURLOPT_HTTPHEADER, nullptr);
  curl_->easy_setopt(e, CURLOPT_ERRORBUFFER, nullptr);
  curl_->slist_free_all(list);
  if (rc == CURLE_WRITE_ERROR && !t.sink_status.ok()) return t.sink_status;
  if (rc == CURLE_WRITE_ERROR && response.too_large) {
    return Status::Invalid("more than " + std::to_string(max_body) + " bytes");
  }
  if (rc != CURLE_OK) {
    Response failed;
    failed.status = 0;
    failed.curl_code = rc;
    failed.body = error[0] != '\0' ? std::string(error) : curl_->easy_strerror(rc);
    return failed;
  }
  curl_->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

Status RegistryClient::Reauthenticate(const std::string& www_authenticate,
                                      const std::string& failed) {
  std::lock_guard<std::mutex> lock(auth_mu_);
  if (Authorization() != failed) return Status::Ok();  // renewed meanwhile
  return Authenticate(www_authenticate);
}

Status RegistryClient::Authenticate(const std::string& www_authenticate) {
  std::optional<Challenge> c = ParseChallenge(www_authenticate);
  const std::string need_creds =
      "the registry needs credentials: --creds USER:PASSWORD, --authfile FILE, or `podman login`";
  if (!c) return Status::Error(EACCES, "the registry asks for authentication it does not describe");
  if (c->scheme == "basic") {
    if (!creds_) return Status::Error(EACCES, need_creds);
    std::lock_guard<std::mutex> lock(mu_);
    authorization_ = "Basic " + Base64Encode(creds_->user + ":" + creds_->password);
    return Status::Ok();
  }
  if (c->scheme != "bearer") {
    return Status::Unsupported("the registry asks for " + Printable(c->scheme) +
                               " authentication, which layerfs does not speak");
  }
  auto realm = c->params.find("realm");
  if (realm == c->params.end() || realm->second.empty()) {
    return Status::Error(EACCES, "the registry's bearer challenge names no realm");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    challenge_ = www_authenticate;
  }
  auto escape = [&](const std::string& s) {
    char* e = curl_->easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
    std::string out = e != nullptr ? e : "";
    curl_->free(e);
    return out;
  };
  std::string url = realm->second;
  url += url.find('?') == std::string::npos ? "?" : "&";
  auto service = c->params.find("service");
  if (service != c->params.end()) url += "service=" + escape(service->second) + "&";
  auto scope = c->params.find("scope");
  url += "scope=" +
         escape(scope != c->params.end() ? scope->second : "repository:" + repository_ + ":pull");
  std::vector<std::string> headers;
  if (creds_) {
    headers.push_back("Authorization: Basic " +
                      Base64Encode(creds_->user + ":" + creds_->password));
  }
  LAYERFS_ASSIGN_OR_RETURN(Response r, Perform(url, headers, nullptr, 1 << 20, false));
  if (r.status == 0) return Status::Error(EHOSTUNREACH, "token service: " + r.body);
  if (r.status == 401 || r.status == 403) {
    if (creds_) {
      return Status::Error(EACCES, "the registry's token service refused the credentials from " +
                                       creds_->from + " (HTTP " + std::to_string(r.status) + ")");
    }
    return Status::Error(EACCES, need_creds);
  }
  if (r.status != 200) return HttpError(r, "token service");
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  std::string token;
  if (j.is_object()) {
    for (const char* key : {"token", "access_token"}) {
      if (j.contains(key) && j[key].is_string() && !j[key].get<std::string>().empty()) {
        token = j[key].get<std::string>();
        break;
      }
    }
  }
  if (token.empty()) return Status::Error(EACCES, "the registry's token service sent no token");
  long expires = 60;  // the distribution spec's default
  if (j.contains("expires_in") && j["expires_in"].is_number_integer()) {
    expires = std::clamp<long>(j["expires_in"].get<long>(), 1, 86400);
  }
  std::lock_guard<std::mutex> lock(mu_);
  authorization_ = "Bearer " + token;
  // Renewed a little early, so that a long transfer does not begin with a token about to lapse.
  token_expiry_ = Clock::now() + std::chrono::seconds(expires) -
                  std::chrono::milliseconds(std::min<long>(expires * 100, 10000));
  return Status::Ok();
}

Status RegistryClient::HttpError(const Response& r, const std::string& what) const {
  std::string detail;
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty() &&
      j["errors"][0].is_object()) {
    const auto& e = j["errors"][0];
    std::string code =
        e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
    std::string message =
        e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
    detail = Printable(message.empty() ? code : message);
  }
  std::string status = "HTTP " + std::to_string(r.status);
  std::string text = display_ + ": " + what + ": ";
  switch (r.status) {
    case 401:
      return Status::Error(EACCES,
                           text +
                               (creds_ ? "the registry refused the credentials from " + creds_->from
                                       : std::string("the registry needs "
                                                     "credentials (--creds, "
                                                     "--authfile)")) +
                               " (" + status + ")");
    case 403:
      return Status::Error(EACCES, text + "access denied (" + status + ")");
    case 404:
      return Status::NotFound(text + (detail.empty() ? "not found" : detail) + " (" + status + ")");
    default:
      return Status::Error(EIO, text + (detail.empty() ? "" : detail + " ") + "(" + status + ")");
  }
}

Result<RegistryClient::Response> RegistryClient::Get(const std::string& path,
                                                     const std::string& accept, const Sink* sink,
                                                     size_t max_body, const std::string& what,
                                                     const std::function<void()>& restart) {
  Call call;
  call.path = path;
  if (!accept.empty()) call.headers.push_back("Accept: " + accept);
  call.sink = sink;
  call.max_body = max_body;
  call.what = what;
  call.restart = restart;
  return Send(call);
}

Result<RegistryClient::Response> RegistryClient::Send(const Call& call) {
  const std::vector<std::string>& headers = call.headers;
  const std::string& what = call.what;
  const std::function<void()>& restart = call.restart;
  const std::string url = call.path.rfind("http", 0) == 0 ? call.path : Url(call.path);
  bool renewed = false;
  std::string last_error;  // of the attempt before, for the deadline's message
  const auto no_answer = [&] {
    return Status::Error(EIO, display_ + ": " + what + ": no answer within " +
                                  std::to_string(options_.read_timeout_s) + " s" +
                                  (last_error.empty() ? "" : " (" + last_error + ")"));
  };
  for (int attempt = 0;; ++attempt) {
    std::string challenge, authorization;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (token_expiry_ && Clock::now() >= *token_expiry_) challenge = challenge_;
      authorization = authorization_;
    }
    if (!challenge.empty()) (void)Reauthenticate(challenge, authorization);
    authorization = Authorization();
    long timeout_ms = 0;
    if (call.deadline) {
      timeout_ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         *call.deadline - Clock::now())
                                         .count());
      if (timeout_ms <= 0) return no_answer();
    }
    auto performed = Perform(url, headers, call.sink, call.max_body, true, call.method, call.body,
                             timeout_ms);
    if (!performed.ok()) return performed.status().WithContext(display_ + ": " + what);
    Response r = std::move(performed).value();
    const bool transport = r.status == 0;
    const bool busy = r.status == 429 || r.status >= 500;
    if (r.status == 401 && !renewed && !r.www_authenticate.empty()) {
      renewed = true;
      LAYERFS_RETURN_IF_ERROR(
          Reauthenticate(r.www_authenticate, authorization).WithContext(display_));
      if (restart) restart();
      continue;
    }
    if ((transport && Retryable(r.curl_code)) || busy) {
      // A call with a deadline tries until then; others a few times.
      last_error = transport ? r.body : "HTTP " + std::to_string(r.status);
      if (call.deadline && Clock::now() >= *call.deadline) return no_answer();
      if (call.deadline || attempt < options_.retries) {
        std::chrono::steady_clock::duration wait =
            std::chrono::milliseconds(250 << std::min(attempt, 3));
        if (busy && r.retry_after_s >= 0 && r.retry_after_s <= 10) {
          wait = std::chrono::seconds(r.retry_after_s);
        }
        if (call.deadline) {
          wait = std::min<std::chrono::steady_clock::duration>(
              wait, std::max<std::chrono::steady_clock::duration>(
                        *call.deadline - Clock::now(), std::chrono::milliseconds(1)));
        }
        std::this_thread::sleep_for(wait);
        if (restart) restart();
        continue;
      }
    }
    if (transport) return Status::Error(EIO, display_ + ": " + what + ": " + r.body);
    const bool allowed =
        std::find(call.allowed.begin(), call.allowed.end(), r.status) != call.allowed.end();
    if ((r.status < 200 || r.status >= 300) && !allowed) return HttpError(r, what);
    return r;
  }
}

Result<FetchedManifest> RegistryClient::GetManifest(const std::string& reference) {
  const std::string what = "manifest " + reference;
  auto got = Get("/v2/" + repository_ + "/manifests/" + reference, kManifestAccept, nullptr,
                 kMaxManifestBytes, what);
  if (!got.ok()) return got.status();
  Response r = std::move(got).value();
  FetchedManifest m;
  m.digest = Sha256::Of(r.body.data(), r.body.size());
  auto asked = Digest::Parse(reference);
  if (asked.ok() && *asked != m.digest) {
    return Status::Corrupt(display_ + "@" + reference +
                           ": the registry sent a manifest of digest " + m.digest.str());
  }
  if (!r.docker_digest.empty()) {
    auto stated = Digest::Parse(r.docker_digest);
    if (stated.ok() && *stated != m.digest) {
      return Status::Corrupt(display_ + ":" + reference +
                             ": the manifest does not match the digest "
                             "the registry states for it (" +
                             r.docker_digest + ")");
    }
  }
  m.media_type = r.content_type.substr(0, r.content_type.find(';'));
  m.media_type = Trim(m.media_type);
  m.body = std::move(r.body);
  return m;
}

Result<std::string> RegistryClient::GetBlob(const Digest& digest, size_t max_size) {
  auto got = Get("/v2/" + repository_ + "/blobs/" + digest.str(), "", nullptr, max_size,
                 "blob " + digest.str());
  if (!got.ok()) return got.status();
  return std::move(got->body);
}

Status RegistryClient::FetchBlob(const Digest& digest, const Sink& sink,
                                 const std::function<void()>& restart) {
  return Get("/v2/" + repository_ + "/blobs/" + digest.str(), "", &sink, 0, "blob " + digest.str(),
             restart)
      .status();
}

}  // namespace layerfs

namespace layerfs {

Result<std::optional<FetchedManifest>> RegistryClient::FindManifest(const std::string& reference) {
  Call call;
  call.method = "HEAD";
  call.path = "/v2/" + repository_ + "/manifests/" + reference;
  call.headers.push_back(std::string("Accept: ") + kManifestAccept);
  call.what = "manifest " + reference;
  call.allowed = {404};
  LAYERFS_ASSIGN_OR_RETURN(Response head, Send(call));
  if (head.status == 404) return std::optional<FetchedManifest>();
  LAYERFS_ASSIGN_OR_RETURN(FetchedManifest m, GetManifest(reference));
  return std::optional<FetchedManifest>(std::move(m));
}

Status RegistryClient::PushBlob(const Digest& digest, std::string_view data) {
  Call head;
  head.method = "HEAD";
  head.path = "/v2/" + repository_ + "/blobs/" + digest.str();
  head.what = "blob " + digest.str();
  head.allowed = {404};
  LAYERFS_ASSIGN_OR_RETURN(Response exists, Send(head));
  if (exists.status == 200) return Status::Ok();

  Call start;
  start.method = "POST";
  start.path = "/v2/" + repository_ + "/blobs/uploads/";
  start.what = "upload of blob " + digest.str();
  LAYERFS_ASSIGN_OR_RETURN(Response started, Send(start));
  if (started.location.empty()) {
    return Status::Error(EIO, display_ + ": " + start.what + ": the registry gave no Location");
  }
  Call put;
  put.method = "PUT";
  put.path = started.location;
  if (put.path.rfind("http", 0) != 0 && (put.path.empty() || put.path[0] != '/')) {
    return Status::Error(EIO, display_ + ": " + start.what + ": the registry gave the Location " +
                                  Printable(put.path));
  }
  put.path += (put.path.find('?') == std::string::npos ? "?" : "&");
  put.path += "digest=" + digest.str();
  put.headers = {"Content-Type: application/octet-stream"};
  put.body = data;
  put.what = start.what;
  return Send(put).status();
}

Result<bool> RegistryClient::PushManifest(const std::string& reference, std::string_view body,
                                          const std::string& media_type) {
  Call put;
  put.method = "PUT";
  put.path = "/v2/" + repository_ + "/manifests/" + reference;
  put.headers = {"Content-Type: " + media_type};
  put.body = body;
  put.what = "push of manifest " + reference;
  LAYERFS_ASSIGN_OR_RETURN(Response r, Send(put));
  return !r.oci_subject.empty();
}

Result<std::string> RegistryClient::FetchRange(const Digest& digest, uint64_t offset,
                                               uint64_t length) {
  if (length == 0) return std::string();
  Call call;
  call.path = "/v2/" + repository_ + "/blobs/" + digest.str();
  call.headers = {"Range: bytes=" + std::to_string(offset) + "-" +
                  std::to_string(offset + length - 1)};
  call.max_body = static_cast<size_t>(length);
  call.what =
      "blob " + digest.str() + " bytes " + std::to_string(offset) + "+" + std::to_string(length);
  call.deadline = Clock::now() + std::chrono::seconds(options_.read_timeout_s);
  LAYERFS_ASSIGN_OR_RETURN(Response r, Send(call));
  if (r.status != 206 && !(r.status == 200 && offset == 0)) {
    return Status::Error(EIO, display_ + ": " + call.what +
                                  ": the registry did not answer the "
                                  "range request (HTTP " +
                                  std::to_string(r.status) + ")");
  }
  if (r.body.size() != length) {
    return Status::Error(EIO, display_ + ": " + call.what + ": the registry sent " +
                                  std::to_string(r.body.size()) + " bytes");
  }
  return std::move(r.body);
}

Result<std::optional<std::string>> RegistryClient::Referrers(const Digest& digest,
                                                             const std::string& type) {
  Call call;
  call.path = "/v2/" + repository_ + "/referrers/" + digest.str() + "?artifactType=" + type;
  call.headers = {"Accept: application/vnd.oci.image.index.v1+json"};
  call.max_body = kMaxManifestBytes;
  call.what = "referrers of " + digest.str();
  call.allowed = {400, 404, 405};
  LAYERFS_ASSIGN_OR_RETURN(Response r, Send(call));
  if (r.status != 200) return std::optional<std::string>();
  // A registry without the API may answer 200 with something else (an HTML page, an error).
  if (r.content_type.find("application/vnd.oci.image.index.v1+json") == std::string::npos) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(std::move(r.body));
}

}  // namespace layerfs
