// CurlApi: libcurl, loaded when an image comes from a registry.
//
// libcurl and the libraries it links (TLS, HTTP/2, IDN, Kerberos, LDAP) take about 13 ms to load
// and relocate, several times what a whole mount of a local image takes; so layerfs does not link
// it. The first registry image loads it with dlopen and takes the functions it uses from it.
#ifndef LAYERFS_REGISTRY_CURL_API_H_
#define LAYERFS_REGISTRY_CURL_API_H_

#include <curl/curl.h>

#include "layerfs/status.h"

namespace layerfs {

struct CurlApi {
  decltype(&curl_easy_init) easy_init;
  decltype(&curl_easy_cleanup) easy_cleanup;
  decltype(&curl_easy_reset) easy_reset;
  decltype(&curl_easy_setopt) easy_setopt;
  decltype(&curl_easy_getinfo) easy_getinfo;
  decltype(&curl_easy_perform) easy_perform;
  decltype(&curl_easy_strerror) easy_strerror;
  decltype(&curl_slist_append) slist_append;
  decltype(&curl_slist_free_all) slist_free_all;
  decltype(&curl_share_init) share_init;
  decltype(&curl_share_setopt) share_setopt;
  decltype(&curl_share_cleanup) share_cleanup;
  decltype(&curl_global_init) global_init;
  decltype(&curl_easy_escape) easy_escape;
  decltype(&curl_free) free;
};

// libcurl, loaded and initialized once per process; an error says how to install it.
Result<const CurlApi*> Curl();

}  // namespace layerfs

#endif  // LAYERFS_REGISTRY_CURL_API_H_
