// layerfs --version: this build, and the libraries it runs with.
#include <archive.h>
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fmt/format.h>
#include <fuse_lowlevel.h>
#include <openssl/crypto.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include <string>

#include "cli/commands.h"

#include "blob/span_decoder.h"

namespace layerfs {

std::string VersionText() {
  // libarchive reads gzip and zstd layers with the zlib and zstd named here (linked statically,
  // these are the versions built in).
  return fmt::format(
      "layerfs {}\n"
      "libfuse {}\n"
      "{}\n"
      "zlib {}, zstd {}, {}, xxHash {}.{}.{}\n"
      "gzip layers read in place are inflated with {}",
      LAYERFS_VERSION, fuse_pkgversion(), archive_version_string(), zlibVersion(),
      ZSTD_versionString(), OpenSSL_version(OPENSSL_VERSION), XXH_versionNumber() / 10000,
      XXH_versionNumber() / 100 % 100, XXH_versionNumber() % 100,
      HaveIsal() ? "ISA-L (zlib with LAYERFS_INFLATE=zlib)" : "zlib (built without ISA-L)");
}

}  // namespace layerfs
