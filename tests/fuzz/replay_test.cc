// Every input in fuzz/regressions/<target>/ (inputs that once crashed a fuzz target or broke one
// of its invariants) is run through the same target body, in every build: a regression aborts
// the test binary.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"

namespace layerfs {
namespace {

std::vector<std::string> InputsOf(const std::string& target) {
  std::vector<std::string> out;
  std::filesystem::path dir =
      std::filesystem::path(LAYERFS_SOURCE_DIR) / "fuzz/regressions" / target;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().filename() != ".keep") {
      out.push_back(entry.path().string());
    }
  }
  return out;
}

std::string Contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Replay(const std::string& target, int (*body)(const uint8_t*, size_t)) {
  for (const std::string& path : InputsOf(target)) {
    INFO(path);
    std::string data = Contents(path);
    CHECK(body(reinterpret_cast<const uint8_t*>(data.data()), data.size()) == 0);
  }
}

TEST_CASE("fuzz regressions: the tar indexer", "[fuzz]") {
  fuzz::Init();
  Replay("tar_index", fuzz::TarIndex);
}

TEST_CASE("fuzz regressions: the layer index reader", "[fuzz]") {
  Replay("layer_index", fuzz::LayerIndexBytes);
}

TEST_CASE("fuzz regressions: the manifest parsers, and the manifest seeds", "[fuzz]") {
  fuzz::Init();
  Replay("manifest", fuzz::Manifest);
  for (const std::string& seed : fuzz::ManifestSeeds()) {
    CHECK(fuzz::Manifest(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()) == 0);
  }
}

}  // namespace
}  // namespace layerfs
