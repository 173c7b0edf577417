#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_targets.h"

// With LAYERFS_FUZZ_WRITE_SEEDS=DIR, writes the seed corpus to DIR and exits (fuzz/make_seeds).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  layerfs::fuzz::Init();
  const char* dir = std::getenv("LAYERFS_FUZZ_WRITE_SEEDS");
  if (dir == nullptr) return 0;
  int n = 0;
  for (const std::string& seed : layerfs::fuzz::ManifestSeeds()) {
    std::string path = std::string(dir) + "/seed-" + std::to_string(n++);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(seed.data(), 1, seed.size(), f) != seed.size()) std::exit(1);
    std::fclose(f);
  }
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return layerfs::fuzz::Manifest(data, size);
}
