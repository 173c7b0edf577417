// Checks on an indexed layer that tests share: each fails the test (REQUIRE) with the reason when
// what it looks for is not there.
#ifndef LAYERFS_TESTS_UTIL_LAYER_CHECKS_H_
#define LAYERFS_TESTS_UTIL_LAYER_CHECKS_H_

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "tests/util/tar_writer.h"

namespace layerfs::testing {

// The layer `tar` (uncompressed) indexes into.
inline Layer MustIndex(const std::string& tar) {
  auto layer = IndexTar(tar);
  INFO(layer.status().message());
  REQUIRE(layer.ok());
  return std::move(layer).value();
}

// The index entry of `path` (normalised).
inline const IndexEntry& EntryAt(const Layer& layer, std::string_view path) {
  uint32_t id = layer.index.FindPath(path);
  INFO("path: " << path);
  REQUIRE(id != kNoEntry);
  return layer.index.entry(id);
}

// The whole content of the regular entry `path`, read through the layer's bytes.
inline std::string Content(const Layer& layer, std::string_view path) {
  auto data = ReadPath(layer, path);
  INFO(data.status().message());
  REQUIRE(data.ok());
  return *data;
}

}  // namespace layerfs::testing

#endif  // LAYERFS_TESTS_UTIL_LAYER_CHECKS_H_
