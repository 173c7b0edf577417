#include "registry/curl_api.h"

#include <dlfcn.h>

#include <mutex>

namespace layerfs {
namespace {

Result<CurlApi> Load() {
  void* lib = ::dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    return Status::Unsupported(std::string("images from a registry need libcurl (Debian: apt-get "
                                           "install libcurl4): ") +
                               ::dlerror());
  }
  CurlApi api{};
  Status missing = Status::Ok();
  auto take = [&](auto& fn, const char* name) {
    void* sym = ::dlsym(lib, name);
    if (sym == nullptr && missing.ok()) {
      missing = Status::Unsupported(std::string("libcurl.so.4 has no ") + name);
    }
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(sym);
  };
  take(api.easy_init, "curl_easy_init");
  take(api.easy_cleanup, "curl_easy_cleanup");
  take(api.easy_reset, "curl_easy_reset");
  take(api.easy_setopt, "curl_easy_setopt");
  take(api.easy_getinfo, "curl_easy_getinfo");
  take(api.easy_perform, "curl_easy_perform");
  take(api.easy_strerror, "curl_easy_strerror");
  take(api.slist_append, "curl_slist_append");
  take(api.slist_free_all, "curl_slist_free_all");
  take(api.share_init, "curl_share_init");
  take(api.share_setopt, "curl_share_setopt");
  take(api.share_cleanup, "curl_share_cleanup");
  take(api.global_init, "curl_global_init");
  take(api.easy_escape, "curl_easy_escape");
  take(api.free, "curl_free");
  if (!missing.ok()) return missing;
  if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    return Status::Error(EIO, "libcurl failed to initialize");
  }
  return api;  // `lib` stays loaded for the life of the process
}

}  // namespace

Result<const CurlApi*> Curl() {
  static std::once_flag once;
  static Result<CurlApi> api = Status::Error(EIO, "libcurl not loaded");
  std::call_once(once, [] { api = Load(); });
  if (!api.ok()) return api.status();
  return &*api;
}

}  // namespace layerfs
