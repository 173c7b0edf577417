// Random layer stacks checked three ways: MergedTree against StackLookup (the layer-by-layer
// resolver), and MergedTree against an in-test model that applies each layer to a plain map of
// paths the way umoci and containerd extract a layer onto a directory.
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "index/layer_data.h"
#include "tests/util/tar_writer.h"
#include "tree/layer_stack.h"
#include "tree/merged_tree.h"

namespace layerfs {
namespace {

using testing::TarWriter;

struct Op {
  enum Kind { kFile, kDir, kSymlink, kWhiteout, kOpaque };
  Kind kind;
  std::string path;  // kOpaque: the directory ("" is the root)
  std::string data;  // kFile: content; kSymlink: target
};
using LayerOps = std::vector<Op>;

std::string Describe(const std::vector<LayerOps>& stack) {
  static const char* kNames[] = {"file", "dir", "symlink", "whiteout", "opaque"};
  std::ostringstream out;
  for (size_t l = 0; l < stack.size(); ++l) {
    out << "layer " << l << ":";
    for (const Op& op : stack[l]) {
      out << " " << kNames[op.kind] << "(" << (op.path.empty() ? "/" : op.path) << ")";
    }
    out << "\n";
  }
  return out.str();
}

// Short paths over a three-letter alphabet, so that layers often touch the same names.
std::string RandomPath(std::mt19937& rng) {
  static const char* kParts[] = {"a", "b", "c"};
  const uint32_t depth = 1 + rng() % 3;
  std::string path;
  for (uint32_t i = 0; i < depth; ++i) {
    if (!path.empty()) path += '/';
    path += kParts[rng() % 3];
  }
  return path;
}

std::vector<LayerOps> RandomStack(std::mt19937& rng) {
  std::vector<LayerOps> stack(1 + rng() % 4);
  for (size_t l = 0; l < stack.size(); ++l) {
    const uint32_t ops = 1 + rng() % 8;
    for (uint32_t k = 0; k < ops; ++k) {
      Op op;
      const uint32_t pick = rng() % 100;
      op.path = RandomPath(rng);
      if (pick < 30) {
        op.kind = Op::kFile;
        op.data = "L" + std::to_string(l) + "#" + std::to_string(k);
      } else if (pick < 55) {
        op.kind = Op::kDir;
      } else if (pick < 65) {
        op.kind = Op::kSymlink;
        op.data = "target-" + std::to_string(l) + "-" + std::to_string(k);
      } else if (pick < 88) {
        op.kind = Op::kWhiteout;
      } else {
        op.kind = Op::kOpaque;
        // The parent of the random path, so that the root is sometimes opaque too.
        size_t slash = op.path.rfind('/');
        op.path = slash == std::string::npos ? "" : op.path.substr(0, slash);
      }
      stack[l].push_back(std::move(op));
    }
  }
  return stack;
}

std::string TarOf(const LayerOps& ops) {
  TarWriter tar;
  for (const Op& op : ops) {
    switch (op.kind) {
      case Op::kFile:
        tar.File(op.path, op.data);
        break;
      case Op::kDir:
        tar.Dir(op.path);
        break;
      case Op::kSymlink:
        tar.Symlink(op.path, op.data);
        break;
      case Op::kWhiteout:
        tar.Whiteout(op.path);
        break;
      case Op::kOpaque:
        tar.Opaque(op.path);
        break;
    }
  }
  return tar.Finish();
}

// The model: a directory tree as a map from path to node, changed by extracting layers onto it.
struct ModelNode {
  char type;         // 'f', 'd', 'l'
  std::string data;  // file content or symlink target
};
using Model = std::map<std::string, ModelNode>;

bool IsBelow(const std::string& path, const std::string& dir) {
  return dir.empty() || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

void EraseSubtree(Model* model, const std::string& dir) {
  for (auto it = model->begin(); it != model->end();) {
    it = IsBelow(it->first, dir) ? model->erase(it) : std::next(it);
  }
}

void ErasePath(Model* model, const std::string& path) {
  model->erase(path);
  EraseSubtree(model, path);
}

// Makes `dir` and its ancestors directories, replacing any non-directory in the way (an entry of
// a tar extracts into its parent directory, which extraction creates when it is missing).
void ImplyDirs(Model* model, const std::string& dir) {
  if (dir.empty()) return;
  size_t pos = 0;
  for (;;) {
    size_t slash = dir.find('/', pos);
    std::string prefix = dir.substr(0, slash);
    auto it = model->find(prefix);
    if (it == model->end() || it->second.type != 'd') (*model)[prefix] = ModelNode{'d', ""};
    if (slash == std::string::npos) return;
    pos = slash + 1;
  }
}

std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// Extracts one layer. Whiteouts and opaque markers act on what the layers below left (image-spec
// layer.md: they never remove the layer's own entries, wherever they are in the tar); then the
// entries extract in tar order, a later entry of a path replacing an earlier one.
void ApplyLayer(const LayerOps& ops, Model* model) {
  for (const Op& op : ops) {
    if (op.kind == Op::kWhiteout) ErasePath(model, op.path);
    if (op.kind == Op::kOpaque) EraseSubtree(model, op.path);
  }
  for (const Op& op : ops) {
    if (op.kind == Op::kOpaque) {
      ImplyDirs(model, op.path);
      continue;
    }
    ImplyDirs(model, ParentOf(op.path));
    switch (op.kind) {
      case Op::kFile:
      case Op::kSymlink:
        ErasePath(model, op.path);
        (*model)[op.path] = ModelNode{op.kind == Op::kFile ? 'f' : 'l', op.data};
        break;
      case Op::kDir:
        ImplyDirs(model, op.path);
        break;
      default:
        break;
    }
  }
}

// What the merged tree shows, reached only through Children(), in the model's terms.
void WalkTree(const MergedTree& tree, uint32_t dir, const std::string& prefix, Model* out) {
  for (uint32_t c : tree.Children(dir)) {
    const std::string path = prefix + std::string(tree.Name(c));
    const IndexEntry& e = tree.EntryOf(c);
    switch (static_cast<EntryType>(e.type)) {
      case EntryType::kDirectory:
        (*out)[path] = ModelNode{'d', ""};
        WalkTree(tree, c, path + "/", out);
        break;
      case EntryType::kSymlink:
        (*out)[path] = ModelNode{'l', std::string(tree.LinkTarget(c))};
        break;
      case EntryType::kRegular: {
        std::string data(e.size, '\0');
        auto got = ReadEntry(tree.layer(tree.LayerOf(c)), e, 0, data.data(), data.size());
        (*out)[path] = ModelNode{'f', got.ok() ? data.substr(0, *got) : "<read error>"};
        break;
      }
      default:
        (*out)[path] = ModelNode{'?', ""};
        break;
    }
  }
}

std::string Show(const Model& model) {
  std::string out;
  for (const auto& [path, node] : model) {
    out +=
        "  " + path + " " + node.type + (node.data.empty() ? "" : " \"" + node.data + "\"") + "\n";
  }
  return out.empty() ? "  (empty)\n" : out;
}

// Every path any layer names, with its ancestors.
std::set<std::string> MentionedPaths(const std::vector<LayerOps>& stack) {
  std::set<std::string> paths;
  for (const LayerOps& ops : stack) {
    for (const Op& op : ops) {
      for (std::string p = op.path; !p.empty(); p = ParentOf(p)) paths.insert(p);
    }
  }
  return paths;
}

// The first disagreement between the merged tree and StackLookup, or "".
std::string CompareWithStack(const MergedTree& tree, const std::vector<Layer>& layers,
                             const std::set<std::string>& paths) {
  for (const std::string& path : paths) {
    const uint32_t node = tree.LookupPath(path);
    const StackHit hit = StackLookup(layers, layers.size(), path);
    if ((node != MergedTree::kNoNode) != hit.found()) {
      return path + ": merged tree " + (node != MergedTree::kNoNode ? "finds" : "does not find") +
             " it, StackLookup " + (hit.found() ? "does" : "does not");
    }
    if (node == MergedTree::kNoNode || tree.IsDir(node)) continue;
    const IndexEntry* want = &layers[hit.layer].index.entry(hit.entry);
    if (tree.LayerOf(node) != hit.layer || &tree.EntryOf(node) != want) {
      return path + ": merged tree takes layer " + std::to_string(tree.LayerOf(node)) +
             ", StackLookup layer " + std::to_string(hit.layer);
    }
  }
  return "";
}

// The first disagreement between the merged tree and the model, or "".
std::string CompareWithModel(const MergedTree& tree, const Model& model) {
  Model seen;
  WalkTree(tree, MergedTree::kRoot, "", &seen);
  if (seen.size() + 1 != tree.visible_count()) return "visible_count disagrees with Children()";
  if (seen.size() != model.size() ||
      !std::equal(seen.begin(), seen.end(), model.begin(), [](const auto& a, const auto& b) {
        return a.first == b.first && a.second.type == b.second.type &&
               a.second.data == b.second.data;
      })) {
    return "merged tree shows\n" + Show(seen) + "model has\n" + Show(model);
  }
  for (const auto& [path, node] : model) {
    const uint32_t n = tree.LookupPath(path);
    if (n == MergedTree::kNoNode) return path + ": listed by Children() but not found by lookup";
    if (node.type != 'd') continue;
    uint32_t subdirs = 0;
    for (const auto& [other, other_node] : model) {
      subdirs += other_node.type == 'd' && ParentOf(other) == path;
    }
    if (tree.Nlink(n) != 2 + subdirs) return path + ": st_nlink " + std::to_string(tree.Nlink(n));
  }
  return "";
}

struct Outcome {
  int failed = 0;
  std::string first;  // the first failing stack and what was wrong
};

void Record(Outcome* outcome, uint32_t seed, const std::vector<LayerOps>& stack,
            const std::string& problem) {
  if (problem.empty()) return;
  if (outcome->failed++ == 0) {
    outcome->first = "seed " + std::to_string(seed) + "\n" + Describe(stack) + problem;
  }
}

constexpr int kIterations = 400;

TEST_CASE(
    "random stacks: the merged tree agrees with StackLookup and with layers extracted in order",
    "[tree]") {
  Outcome with_stack, with_model;
  for (int i = 0; i < kIterations; ++i) {
    const uint32_t seed = 1 + static_cast<uint32_t>(i);
    std::mt19937 rng(seed);
    const std::vector<LayerOps> stack = RandomStack(rng);
    std::vector<std::string> tars;
    for (const LayerOps& ops : stack) tars.push_back(TarOf(ops));
    const std::vector<Layer> layers = testing::IndexLayers(tars);
    auto tree = MergedTree::Build(layers);
    REQUIRE(tree.ok());
    Record(&with_stack, seed, stack, CompareWithStack(*tree, layers, MentionedPaths(stack)));
    Model model;
    for (const LayerOps& ops : stack) ApplyLayer(ops, &model);
    Record(&with_model, seed, stack, CompareWithModel(*tree, model));
  }
  {
    INFO(with_stack.first);
    CHECK(with_stack.failed == 0);
  }
  {
    INFO(with_model.first);
    CHECK(with_model.failed == 0);
  }
}

}  // namespace
}  // namespace layerfs
