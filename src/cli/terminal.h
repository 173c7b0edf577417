// What the commands print on a terminal: widths, sizes as `ls -h` shows them, tables and columns
// that fit the terminal, and the progress line of a first indexing.
#ifndef LAYERFS_CLI_TERMINAL_H_
#define LAYERFS_CLI_TERMINAL_H_

#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "index/layer_store.h"

namespace layerfs {

// Columns of the terminal: $COLUMNS, else the window size of stdout, else 80.
size_t TerminalWidth();
// Terminal columns a UTF-8 string takes, roughly: one per code point.
size_t DisplayWidth(std::string_view s);
// `s` cut to `width` columns, with "…" marking the cut.
std::string Truncate(const std::string& s, size_t width);
// Sizes as `ls -lh` shows them (1024-based: 512, 1.5K, 300K, 12M), or exact bytes with `bytes`.
std::string Size(uint64_t n, bool bytes);
// Names in columns filled top to bottom, as `ls -C` lays them out in `width` columns.
std::string Columns(const std::vector<std::string>& names, size_t width);

// A text table: columns right- or left-aligned, some dropped (highest `drop` first) when the
// terminal is too narrow, and the last column cut to fit what remains.
class Table {
 public:
  struct Column {
    std::string header;
    bool right = false;
    int drop = 0;  // 0: always shown; else dropped before columns with a lower number
  };

  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  void Row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

  // The table as lines, each ending in a newline; the last column gets the rest of `width`, at
  // least `min_last` columns.
  std::string Render(size_t width, size_t min_last = 12) const;
  void Print(size_t width, size_t min_last = 12) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// One line on stderr, rewritten in place, while layers are indexed for the first time. Nothing is
// shown for indexing that ends within the first quarter second.
class ProgressLine {
 public:
  ProgressLine() = default;
  ~ProgressLine() { Clear(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  IndexProgress Callback() {
    return [this](const LayerSpec& spec, uint64_t done, uint64_t total) {
      Update(spec, done, total);
    };
  }

  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    if (shown_) Write("\r\033[K");
    shown_ = false;
  }

 private:
  static void Write(const std::string& s) {
    ssize_t ignored = ::write(STDERR_FILENO, s.data(), s.size());
    (void)ignored;
  }

  void Update(const LayerSpec& spec, uint64_t done, uint64_t total) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (layers_.empty()) start_ = now;
    layers_[spec.index] = {done, total};
    if (now - start_ < std::chrono::milliseconds(250)) return;
    if (shown_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    uint64_t all_done = 0;
    uint64_t all_total = 0;
    size_t active = 0;
    for (const auto& [index, p] : layers_) {
      all_done += p.first;
      all_total += p.second;
      active += p.first < p.second;
    }
    const unsigned percent =
        all_total == 0 ? 100 : static_cast<unsigned>(all_done * 100 / all_total);
    std::string text =
        active <= 1
            ? fmt::format("layerfs: indexing layer {} ({}): {}% of {}", spec.index + 1,
                          spec.diff_id ? spec.diff_id->short_hex() : "?", percent,
                          Size(all_total, false))
            : fmt::format("layerfs: indexing {} layers: {}% of {}", active, percent,
                          Size(all_total, false));
    Write("\r" + text + "\033[K");
    shown_ = true;
  }

  std::mutex mu_;  // guards everything below; taken by the loading threads
  std::map<size_t, std::pair<uint64_t, uint64_t>> layers_;  // position -> (done, total)
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
  bool shown_ = false;
};

}  // namespace layerfs

#endif  // LAYERFS_CLI_TERMINAL_H_
