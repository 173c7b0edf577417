// layerfs inspect, which, ls and diff: an image's layers looked at without mounting it. The
// logic is in inspect/inspect.h; this file opens the image and formats what it returns, as tables
// sized to the terminal or as one JSON document (--json).
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <ctime>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/path.h"
#include "cli/commands.h"
#include "cli/terminal.h"
#include "inspect/inspect.h"

namespace layerfs {
namespace {

using Json = nlohmann::ordered_json;

// --- output helpers ------------------------------------------------------------------------------

// Names and paths in an image are bytes; JSON wants UTF-8, so invalid sequences become U+FFFD.
void PrintJson(const Json& doc) {
  fmt::print("{}\n", doc.dump(2, ' ', false, Json::error_handler_t::replace));
}

// Opens the image as every command does, with a progress line when stderr is a terminal.
Result<std::unique_ptr<OpenedImage>> Open(const ImageArgs& args) {
  if (!::isatty(STDERR_FILENO) || !LogEnabled(LogLevel::kWarning)) return OpenImage(args);
  ProgressLine progress;
  auto opened = OpenImage(args, progress.Callback());
  progress.Clear();
  return opened;
}

// --- shared formatting ---------------------------------------------------------------------------

std::string ShortDigest(const LayerSpec& spec) {
  return spec.digest() ? spec.digest()->short_hex() : "-";
}

Json LayerJson(const OpenedImage& image, uint32_t position) {
  const LayerSpec& spec = image.spec.layers[position];
  Json j = {{"number", position + 1}};
  j["digest"] = spec.blob_digest ? Json(spec.blob_digest->str()) : Json(nullptr);
  j["diff_id"] = spec.diff_id ? Json(spec.diff_id->str()) : Json(nullptr);
  return j;
}

std::string ModeString(uint32_t st_mode) {
  std::string s(10, '-');
  switch (st_mode & S_IFMT) {
    case S_IFDIR: s[0] = 'd'; break;
    case S_IFLNK: s[0] = 'l'; break;
    case S_IFCHR: s[0] = 'c'; break;
    case S_IFBLK: s[0] = 'b'; break;
    case S_IFIFO: s[0] = 'p'; break;
    case S_IFSOCK: s[0] = 's'; break;
    default: break;
  }
  static constexpr char kRwx[] = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (st_mode & (0400u >> i)) s[1 + i] = kRwx[i];
  }
  if (st_mode & S_ISUID) s[3] = (st_mode & S_IXUSR) ? 's' : 'S';
  if (st_mode & S_ISGID) s[6] = (st_mode & S_IXGRP) ? 's' : 'S';
  if (st_mode & S_ISVTX) s[9] = (st_mode & S_IXOTH) ? 't' : 'T';
  return s;
}

std::string TimeString(int64_t sec) {
  time_t t = static_cast<time_t>(sec);
  struct tm tm;
  if (::gmtime_r(&t, &tm) == nullptr) return std::to_string(sec);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", &tm);
  return buf;
}

// One index entry of a layer, in a few words: "file 31 0644 0:0", "symlink -> target".
std::string DescribeEntry(const LayerIndex& ix, uint32_t i, bool bytes) {
  const IndexEntry& e = ix.entry(i);
  const auto type = static_cast<EntryType>(e.type);
  std::string out(EntryTypeName(type));
  switch (type) {
    case EntryType::kRegular:
      out += " " + Size(e.size, bytes);
      break;
    case EntryType::kSymlink:
      return out + " -> " + Printable(ix.link_target(e), 4096);
    case EntryType::kHardlink:
      if (e.flags & kFlagLowerLink) return out + " to /" + Printable(ix.link_target(e), 4096);
      return out + " to /" + Printable(ix.PathOf(static_cast<uint32_t>(e.data)), 4096);
    case EntryType::kDirectory:
      if (e.flags & kFlagImplied) out += " (implied)";
      if (e.flags & kFlagOpaque) out += " (opaque)";
      if (e.flags & kFlagImplied) return out;
      break;
    default:
      break;
  }
  return out + fmt::format(" {:04o} {}:{}", e.mode, e.uid, e.gid);
}

Json EntryJson(const LayerIndex& ix, uint32_t i) {
  const IndexEntry& e = ix.entry(i);
  const auto type = static_cast<EntryType>(e.type);
  Json j = {{"type", EntryTypeName(type)}};
  if (type == EntryType::kDirectory) {
    j["implied"] = (e.flags & kFlagImplied) != 0;
    j["opaque"] = (e.flags & kFlagOpaque) != 0;
  }
  if (type == EntryType::kRegular) j["size"] = e.size;
  if (type == EntryType::kSymlink) j["target"] = std::string(ix.link_target(e));
  if (type == EntryType::kHardlink) {
    j["link_to"] = "/" + ((e.flags & kFlagLowerLink) ? std::string(ix.link_target(e))
                                                      : ix.PathOf(static_cast<uint32_t>(e.data)));
  }
  j["mode"] = e.mode;
  j["uid"] = e.uid;
  j["gid"] = e.gid;
  return j;
}

// --- inspect -------------------------------------------------------------------------------------

int Inspect(const InspectArgs& args, const OpenedImage& image) {
  const std::vector<LayerStats> stats = LayerStatistics(image.tree);
  const auto& specs = image.spec.layers;
  LayerStats total;
  uint64_t total_size = 0;
  uint64_t total_tar = 0;
  for (size_t i = 0; i < stats.size(); ++i) {
    total_size += specs[i].blob.length;
    total_tar += image.layers[i].index.tar_size();
    total.wasted_bytes += stats[i].wasted_bytes;
    total.wasted_files += stats[i].wasted_files;
    total.file_bytes += stats[i].file_bytes;
  }

  if (args.json) {
    Json layers = Json::array();
    for (uint32_t i = 0; i < stats.size(); ++i) {
      const LayerStats& s = stats[i];
      const LayerSpec& spec = specs[i];
      Json j = LayerJson(image, i);
      j["media_type"] = spec.media_type.empty() ? Json(nullptr) : Json(spec.media_type);
      j["compression"] = CompressionName(spec.compression);
      j["size"] = spec.blob.length;
      j["uncompressed_size"] = image.layers[i].index.tar_size();
      j["served"] = image.layers[i].served;
      const LayerIndex& ix = image.layers[i].index;
      j["checkpoints"] = ix.checkpoint_count();
      j["span"] = ix.codec() == kIndexCodecNone ? Json(nullptr) : Json(ix.span());
      j["index_size"] = ix.file_size();
      j["entries"] = s.tar_entries;
      j["files"] = s.files;
      j["dirs"] = s.dirs;
      j["implied_dirs"] = s.implied_dirs;
      j["symlinks"] = s.symlinks;
      j["hardlinks"] = s.hardlinks;
      j["other"] = s.other;
      j["whiteouts"] = s.whiteouts;
      j["opaque_dirs"] = s.opaque_dirs;
      j["dropped"] = s.dropped;
      j["file_bytes"] = s.file_bytes;
      j["wasted_files"] = s.wasted_files;
      j["wasted_bytes"] = s.wasted_bytes;
      j["created_by"] = spec.created_by;
      layers.push_back(std::move(j));
    }
    PrintJson({{"image", image.spec.location},
               {"format", image.spec.format},
               {"layers", std::move(layers)},
               {"total", {{"size", total_size},
                          {"uncompressed_size", total_tar},
                          {"file_bytes", total.file_bytes},
                          {"wasted_files", total.wasted_files},
                          {"wasted_bytes", total.wasted_bytes},
                          {"visible_paths", image.tree.visible_paths()}}}});
    return 0;
  }

  // In a sentence, a size without a unit letter is said to be bytes.
  auto words = [&](uint64_t n) {
    std::string s = Size(n, args.bytes);
    return s.back() >= '0' && s.back() <= '9' ? s + " bytes" : s;
  };
  fmt::print("{}: {} layer{}, {} ({} unpacked), {} paths; {} in {} file{} hidden by later "
             "layers\n\n",
             Printable(image.spec.location, 4096), stats.size(), stats.size() == 1 ? "" : "s",
             words(total_size), words(total_tar), image.tree.visible_paths(),
             words(total.wasted_bytes), total.wasted_files, total.wasted_files == 1 ? "" : "s");
  Table table({{"#", true},
               {"DIGEST"},
               {"TYPE", false, 6},
               {"SIZE", true},
               {"UNPACKED", true, 2},
               {"ENTRIES", true, 5},
               {"FILES", true},
               {"DIRS", true, 4},
               {"LINKS", true, 3},
               {"WH", true},
               {"OPQ", true, 1},
               {"WASTED", true},
               {"SERVED", false, 3},
               {"CREATED BY"}});
  for (size_t i = 0; i < stats.size(); ++i) {
    const LayerStats& s = stats[i];
    const LayerSpec& spec = specs[i];
    std::string type = spec.compression == Compression::kNone
                           ? "tar"
                           : "tar+" + std::string(CompressionName(spec.compression));
    std::string created = spec.created_by;
    std::replace(created.begin(), created.end(), '\n', ' ');
    std::replace(created.begin(), created.end(), '\t', ' ');
    table.Row({std::to_string(i + 1), ShortDigest(spec), type, Size(spec.blob.length, args.bytes),
               Size(image.layers[i].index.tar_size(), args.bytes), std::to_string(s.tar_entries),
               std::to_string(s.files), std::to_string(s.dirs + s.implied_dirs),
               std::to_string(s.symlinks + s.hardlinks), std::to_string(s.whiteouts),
               std::to_string(s.opaque_dirs), Size(s.wasted_bytes, args.bytes),
               image.layers[i].served, Printable(created, 4096)});
  }
  table.Print(TerminalWidth());
  return 0;
}

// --- which ---------------------------------------------------------------------------------------

int Which(const InspectArgs& args, const OpenedImage& image) {
  auto report = WhichLayers(image.tree, args.path);
  if (!report.ok()) return Fail(report.status());
  const MergedTree& tree = image.tree;
  if (report->node == MergedTree::kNoNode) {
    std::string why;
    for (const PathLayer& l : report->layers) {
      if (l.role == PathRole::kShadowed || l.role == PathRole::kServes) continue;
      why = fmt::format(" (layer {} {})", l.layer + 1,
                        l.role == PathRole::kWhiteout  ? "deletes " + Printable(l.via, 4096)
                        : l.role == PathRole::kOpaque  ? "has " + Printable(l.via, 4096) +
                                                            " as an opaque directory"
                                                       : "replaces " + Printable(l.via, 4096) +
                                                            " with a non-directory");
      break;
    }
    return Fail(Status::NotFound(Printable(report->path, 4096) +
                                 ": no such path in the merged view" + why));
  }
  struct stat st;
  tree.Stat(report->node, &st);
  const uint32_t data_layer = tree.LayerOf(report->node);

  if (args.json) {
    Json layers = Json::array();
    for (const PathLayer& l : report->layers) {
      Json j = LayerJson(image, l.layer);
      j["role"] = PathRoleName(l.role);
      if (l.entry != kNoEntry) j["entry"] = EntryJson(image.layers[l.layer].index, l.entry);
      if (l.by != kNoLayer) j["by"] = l.by + 1;
      if (!l.via.empty()) j["via"] = l.via;
      layers.push_back(std::move(j));
    }
    uint32_t serving = 0;
    for (const PathLayer& l : report->layers) {
      if (l.role == PathRole::kServes) serving = l.layer;
    }
    PrintJson({{"path", report->path},
               {"type", ModeTypeName(st.st_mode)},
               {"layer", serving + 1},
               {"metadata_layer", data_layer + 1},
               {"layers", std::move(layers)}});
    return 0;
  }

  for (const PathLayer& l : report->layers) {
    if (l.role != PathRole::kServes) continue;
    fmt::print("{}: {}, from layer {} of {} ({})", Printable(report->path, 4096),
               ModeTypeName(st.st_mode), l.layer + 1, image.layers.size(),
               ShortDigest(image.spec.layers[l.layer]));
    if (data_layer != l.layer) {
      fmt::print("; its {} from layer {}", S_ISDIR(st.st_mode) ? "metadata" : "metadata and data",
                 data_layer + 1);
    }
    fmt::print("\n\n");
  }
  Table table({{"LAYER", true}, {"DIGEST"}, {"ROLE"}, {"WHAT"}});
  for (const PathLayer& l : report->layers) {
    const LayerIndex& ix = image.layers[l.layer].index;
    std::string what;
    switch (l.role) {
      case PathRole::kServes:
      case PathRole::kMerged:
        what = DescribeEntry(ix, l.entry, args.bytes);
        break;
      case PathRole::kShadowed:
        what = DescribeEntry(ix, l.entry, args.bytes) + fmt::format(", hidden by layer {}",
                                                                    l.by + 1);
        break;
      case PathRole::kWhiteout:
        what = l.via == report->path ? "whiteout" : "whiteout of " + Printable(l.via, 4096);
        break;
      case PathRole::kOpaque:
        what = Printable(l.via, 4096) + " is opaque: hides it below";
        break;
      case PathRole::kReplaced:
        what = Printable(l.via, 4096) + " is not a directory: hides it below";
        break;
    }
    table.Row({std::to_string(l.layer + 1), ShortDigest(image.spec.layers[l.layer]),
               std::string(PathRoleName(l.role)), what});
  }
  table.Print(TerminalWidth(), 30);
  return 0;
}

// --- ls ------------------------------------------------------------------------------------------

Json NodeJson(const MergedTree& tree, uint32_t n, const std::string& path) {
  struct stat st;
  tree.Stat(n, &st);
  Json j = {{"path", path},
            {"name", n == MergedTree::kRoot ? std::string("/") : std::string(tree.Name(n))},
            {"type", ModeTypeName(st.st_mode)},
            {"mode", st.st_mode & 07777},
            {"nlink", st.st_nlink},
            {"uid", st.st_uid},
            {"gid", st.st_gid},
            {"size", st.st_size},
            {"mtime", st.st_mtim.tv_sec},
            {"mtime_nsec", st.st_mtim.tv_nsec},
            {"layer", tree.LayerOf(n) + 1}};
  if (S_ISLNK(st.st_mode)) j["target"] = std::string(tree.LinkTarget(n));
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    j["rdev"] = {{"major", major(st.st_rdev)}, {"minor", minor(st.st_rdev)}};
  }
  return j;
}

std::string Join(const std::string& dir, std::string_view name) {
  return dir == "/" ? "/" + std::string(name) : dir + "/" + std::string(name);
}

void PrintLong(const MergedTree& tree, const std::vector<std::pair<uint32_t, std::string>>& items,
               bool bytes) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& [n, name] : items) {
    struct stat st;
    tree.Stat(n, &st);
    std::string size = (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
                           ? fmt::format("{}, {}", major(st.st_rdev), minor(st.st_rdev))
                           : Size(static_cast<uint64_t>(st.st_size), bytes);
    std::string shown = Printable(name, 4096);
    if (S_ISLNK(st.st_mode)) shown += " -> " + Printable(tree.LinkTarget(n), 4096);
    rows.push_back({ModeString(st.st_mode), std::to_string(st.st_nlink), std::to_string(st.st_uid),
                    std::to_string(st.st_gid), size, TimeString(st.st_mtim.tv_sec),
                    std::to_string(tree.LayerOf(n) + 1), shown});
  }
  std::vector<size_t> w(8, 0);
  for (const auto& r : rows) {
    for (size_t c = 0; c < 7; ++c) w[c] = std::max(w[c], DisplayWidth(r[c]));
  }
  for (const auto& r : rows) {
    fmt::print("{} {:>{}} {:<{}} {:<{}} {:>{}} {} {:>{}}  {}\n", r[0], r[1], w[1], r[2], w[2],
               r[3], w[3], r[4], w[4], r[5], r[6], w[6], r[7]);
  }
}

int Ls(const InspectArgs& args, const OpenedImage& image) {
  const MergedTree& tree = image.tree;
  auto normalized = NormalizePath(args.path);
  if (!normalized.ok()) return Fail(normalized.status());
  const uint32_t start = tree.LookupPath(*normalized);
  const std::string start_path = "/" + *normalized;
  if (start == MergedTree::kNoNode) {
    return Fail(Status::NotFound(Printable(start_path, 4096) +
                                 ": no such path in the merged view"));
  }

  // The directories to list, in order: the start (if a directory), then with -R every directory
  // below it, depth first in name order.
  std::vector<std::pair<uint32_t, std::string>> dirs;
  if (tree.IsDir(start)) {
    std::vector<std::pair<uint32_t, std::string>> stack = {{start, start_path}};
    while (!stack.empty()) {
      auto d = std::move(stack.back());
      stack.pop_back();
      dirs.push_back(d);
      if (!args.recursive) break;
      std::vector<uint32_t> children = SortedChildren(tree, d.first);
      for (auto it = children.rbegin(); it != children.rend(); ++it) {
        if (tree.IsDir(*it)) stack.emplace_back(*it, Join(d.second, tree.Name(*it)));
      }
    }
  }

  if (args.json) {
    Json entries = Json::array();
    if (!tree.IsDir(start)) {
      entries.push_back(NodeJson(tree, start, start_path));
    }
    for (const auto& [d, path] : dirs) {
      for (uint32_t c : SortedChildren(tree, d)) {
        entries.push_back(NodeJson(tree, c, Join(path, tree.Name(c))));
      }
    }
    PrintJson({{"path", start_path}, {"entries", std::move(entries)}});
    return 0;
  }

  if (!tree.IsDir(start)) {
    if (args.long_format) {
      PrintLong(tree, {{start, start_path}}, args.bytes);
    } else {
      fmt::print("{}\n", Printable(start_path, 4096));
    }
    return 0;
  }
  const size_t width = TerminalWidth();
  for (size_t k = 0; k < dirs.size(); ++k) {
    const auto& [d, path] = dirs[k];
    if (args.recursive) fmt::print("{}{}:\n", k == 0 ? "" : "\n", Printable(path, 4096));
    std::vector<uint32_t> children = SortedChildren(tree, d);
    if (args.long_format) {
      std::vector<std::pair<uint32_t, std::string>> items;
      for (uint32_t c : children) items.emplace_back(c, std::string(tree.Name(c)));
      PrintLong(tree, items, args.bytes);
    } else {
      std::vector<std::string> names;
      for (uint32_t c : children) names.push_back(Printable(tree.Name(c), 4096));
      fmt::print("{}", Columns(names, width));
    }
  }
  return 0;
}

// --- diff ----------------------------------------------------------------------------------------

int Diff(const InspectArgs& args, const OpenedImage& image) {
  auto position = ParseLayerArg(args.layer, image.spec.layers);
  if (!position.ok()) return Fail(position.status());
  MergedTree lower;
  MergedTree upto;
  auto diff = DiffLayer(image.layers, *position, &lower, &upto);
  if (!diff.ok()) return Fail(diff.status());
  const LayerSpec& spec = image.spec.layers[*position];

  auto type_of = [](const MergedTree& tree, uint32_t n) {
    struct stat st;
    tree.Stat(n, &st);
    return ModeTypeName(st.st_mode);
  };

  if (args.json) {
    Json added = Json::array();
    Json changed = Json::array();
    Json deleted = Json::array();
    for (const DiffItem& item : diff->items) {
      switch (item.kind) {
        case DiffItem::Kind::kAdded:
          added.push_back({{"path", item.path}, {"type", type_of(upto, item.node)}});
          break;
        case DiffItem::Kind::kChanged: {
          Json j = {{"path", item.path},
                    {"type", type_of(upto, item.node)},
                    {"lower_type", type_of(lower, item.lower_node)},
                    {"changes", DiffChangeNames(item.changes)}};
          if (item.hidden > 0) j["hidden"] = item.hidden;
          changed.push_back(std::move(j));
          break;
        }
        case DiffItem::Kind::kDeleted:
          deleted.push_back({{"path", item.path},
                             {"by", item.opaque ? "opaque" : "whiteout"},
                             {"lower_type", type_of(lower, item.lower_node)},
                             {"hidden", item.hidden}});
          break;
      }
    }
    Json doc = {{"layer", *position + 1}};
    doc["digest"] = spec.blob_digest ? Json(spec.blob_digest->str()) : Json(nullptr);
    doc["diff_id"] = spec.diff_id ? Json(spec.diff_id->str()) : Json(nullptr);
    doc["created_by"] = spec.created_by;
    doc["added"] = std::move(added);
    doc["changed"] = std::move(changed);
    doc["deleted"] = std::move(deleted);
    doc["summary"] = {{"added", diff->added},
                      {"changed", diff->changed},
                      {"deleted", diff->deleted},
                      {"hidden", diff->hidden},
                      {"inert_whiteouts", diff->inert_whiteouts}};
    PrintJson(doc);
    return 0;
  }

  std::string created = spec.created_by;
  std::replace(created.begin(), created.end(), '\n', ' ');
  fmt::print("layer {} of {} ({}){}\n", *position + 1, image.layers.size(), ShortDigest(spec),
             created.empty() ? "" : ": " + Truncate(Printable(created, 4096), 200));
  std::vector<std::array<std::string, 4>> rows;
  size_t type_width = 0;
  for (const DiffItem& item : diff->items) {
    std::array<std::string, 4> r;
    switch (item.kind) {
      case DiffItem::Kind::kAdded:
        r = {"A", std::string(type_of(upto, item.node)), item.path, ""};
        break;
      case DiffItem::Kind::kChanged: {
        std::string what;
        for (std::string_view name : DiffChangeNames(item.changes)) {
          what += (what.empty() ? "" : ", ") + std::string(name);
        }
        if (item.changes & kChangeType) {
          what = fmt::format("was a {}", type_of(lower, item.lower_node));
        }
        if (item.hidden > 0) {
          what += fmt::format("; {} path{} below hidden", item.hidden, item.hidden == 1 ? "" : "s");
        }
        r = {"C", std::string(type_of(upto, item.node)), item.path, "(" + what + ")"};
        break;
      }
      case DiffItem::Kind::kDeleted:
        r = {"D", item.opaque ? "opaque" : std::string(type_of(lower, item.lower_node)), item.path,
             item.opaque ? fmt::format("({} lower path{} hidden)", item.hidden,
                                       item.hidden == 1 ? "" : "s")
             : item.hidden > 1 ? fmt::format("(and {} path{} below)", item.hidden - 1,
                                             item.hidden == 2 ? "" : "s")
                               : ""};
        break;
    }
    type_width = std::max(type_width, r[1].size());
    rows.push_back(std::move(r));
  }
  for (const auto& r : rows) {
    std::string line = fmt::format("{} {:<{}} {}", r[0], r[1], type_width, Printable(r[2], 4096));
    if (!r[3].empty()) line += "  " + r[3];
    fmt::print("{}\n", line);
  }
  fmt::print("{} added, {} changed, {} deleted ({} lower path{} hidden)\n", diff->added,
             diff->changed, diff->deleted, diff->hidden, diff->hidden == 1 ? "" : "s");
  return 0;
}

}  // namespace

int RunInspect(const InspectArgs& args) {
  auto opened = Open(args.image);
  if (!opened.ok()) return Fail(opened.status());
  switch (args.command) {
    case InspectArgs::Command::kInspect: return Inspect(args, **opened);
    case InspectArgs::Command::kWhich: return Which(args, **opened);
    case InspectArgs::Command::kLs: return Ls(args, **opened);
    case InspectArgs::Command::kDiff: return Diff(args, **opened);
  }
  return 2;
}

}  // namespace layerfs
