#include "bench/bench_util.h"

#include <fcntl.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "index/index_builder.h"
#include "tar/tar_reader.h"

namespace layerfs::bench {

std::vector<std::string> SyntheticPaths(size_t files) {
  static const char* kWords[] = {"lib", "share", "python3", "site-packages", "include", "doc",
                                 "locale", "man", "x86_64-linux-gnu", "encodings", "email",
                                 "http", "json", "asyncio", "sqlite3", "__pycache__"};
  std::mt19937_64 rng(42);
  std::vector<std::string> dirs = {"usr"};
  std::vector<std::string> paths;
  paths.reserve(files);
  size_t d = 0;
  while (paths.size() < files) {
    const std::string dir = dirs[d % dirs.size()];
    ++d;
    // Each directory gets ~30 files and, until deep enough, a couple of subdirectories.
    for (int i = 0; i < 30 && paths.size() < files; ++i) {
      std::string name = std::string(kWords[rng() % 16]) + "_" + std::to_string(rng() % 100000) +
                         (i % 3 == 0 ? ".py" : i % 3 == 1 ? ".so.1" : ".txt");
      paths.push_back(dir + "/" + name);
    }
    if (std::count(dir.begin(), dir.end(), '/') < 4) {
      for (int k = 0; k < 2; ++k) {
        dirs.push_back(dir + "/" + kWords[rng() % 16] + std::to_string(dirs.size()));
      }
    }
  }
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  return paths;
}

Layer LayerFromPaths(const std::vector<std::string>& paths, size_t position) {
  IndexBuilder builder;
  TarEntry e{};
  e.type = TarEntryType::kRegular;
  e.mode = 0644;
  e.mtime_sec = 1700000000;
  for (const std::string& p : paths) {
    e.path = p;
    Status s = builder.Add(e);
    if (!s.ok()) throw std::runtime_error(s.message());
    ++e.index;
  }
  auto bytes = builder.Finish(Digest(), 0);
  if (!bytes.ok()) throw std::runtime_error(bytes.status().message());
  auto index = LayerIndex::FromBytes(std::move(bytes).value());
  if (!index.ok()) throw std::runtime_error(index.status().message());
  Layer layer;
  layer.index = std::move(index).value();
  layer.data = FileSource::Open(std::make_shared<UniqueFd>(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                0, 0, "/dev/null")
                   .value();
  layer.position = position;
  layer.label = "layer " + std::to_string(position);
  return layer;
}

std::vector<Layer> SpreadOverLayers(const std::vector<std::string>& paths, size_t layers) {
  std::vector<std::vector<std::string>> parts(layers);
  for (size_t i = 0; i < paths.size(); ++i) parts[i % layers].push_back(paths[i]);
  std::vector<Layer> out;
  for (size_t l = 0; l < layers; ++l) out.push_back(LayerFromPaths(parts[l], l));
  return out;
}

std::vector<std::string> Shuffled(std::vector<std::string> paths) {
  std::mt19937_64 rng(7);
  std::shuffle(paths.begin(), paths.end(), rng);
  return paths;
}

}  // namespace layerfs::bench
