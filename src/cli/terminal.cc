#include "cli/terminal.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>

namespace layerfs {

// Columns of the terminal: $COLUMNS, else the window size of stdout, else 80.
size_t TerminalWidth() {
  if (const char* env = std::getenv("COLUMNS")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n < 100000) return static_cast<size_t>(n);
  }
  struct winsize ws;
  if (::isatty(STDOUT_FILENO) && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return 80;
}

// Terminal columns a UTF-8 string takes, roughly: one per code point.
size_t DisplayWidth(std::string_view s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

// `s` cut to `width` columns, with "…" marking the cut.
std::string Truncate(const std::string& s, size_t width) {
  if (DisplayWidth(s) <= width) return s;
  if (width == 0) return "";
  std::string out;
  size_t cols = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool starts = (static_cast<unsigned char>(s[i]) & 0xc0) != 0x80;
    if (starts && ++cols == width) break;
    out += s[i];
  }
  return out + "…";
}

// Sizes as `ls -lh` shows them (1024-based: 512, 1.5K, 300K, 12M), or exact bytes with -b.
std::string Size(uint64_t n, bool bytes) {
  if (bytes || n < 1024) return std::to_string(n);
  static constexpr const char* kUnits[] = {"K", "M", "G", "T", "P"};
  double v = static_cast<double>(n);
  size_t u = 0;
  v /= 1024;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  return v < 10 ? fmt::format("{:.1f}{}", v, kUnits[u]) : fmt::format("{:.0f}{}", v, kUnits[u]);
}

std::string Table::Render(size_t width, size_t min_last) const {
std::string text;
  const size_t n = columns_.size();
  std::vector<size_t> w(n, 0);
  for (size_t c = 0; c < n; ++c) {
    w[c] = DisplayWidth(columns_[c].header);
    for (const auto& r : rows_) w[c] = std::max(w[c], DisplayWidth(r[c]));
  }
  std::vector<bool> shown(n, true);
  auto total = [&] {
    size_t t = 0;
    for (size_t c = 0; c + 1 < n; ++c) t += shown[c] ? w[c] + 2 : 0;
    return t + std::min(w[n - 1], min_last);
  };
  while (total() > width) {
    size_t victim = n;
    for (size_t c = 0; c + 1 < n; ++c) {
      if (shown[c] && columns_[c].drop > 0 &&
          (victim == n || columns_[c].drop > columns_[victim].drop)) {
        victim = c;
      }
    }
    if (victim == n) break;
    shown[victim] = false;
  }
  size_t fixed = total() - std::min(w[n - 1], min_last);
  const size_t last = std::max(min_last, width > fixed ? width - fixed : 0);
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < n; ++c) {
      if (!shown[c]) continue;
      if (c + 1 == n) {
        out += Truncate(cells[c], last);
        break;
      }
      const size_t pad = w[c] - DisplayWidth(cells[c]);
      if (columns_[c].right) out.append(pad, ' ');
      out += cells[c];
      if (!columns_[c].right) out.append(pad, ' ');
      out += "  ";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    text += out + "\n";
  };
  std::vector<std::string> header;
  for (const Column& c : columns_) header.push_back(c.header);
  line(header);
  for (const auto& r : rows_) line(r);
  return text;
}

void Table::Print(size_t width, size_t min_last) const {
  fmt::print("{}", Render(width, min_last));
}

// Names in columns, filled top to bottom, as `ls -C` does.
std::string Columns(const std::vector<std::string>& names, size_t width) {
  std::string text;
  if (names.empty()) return text;
  size_t rows = 1;
  std::vector<size_t> widths;
  for (; rows <= names.size(); ++rows) {
    const size_t cols = (names.size() + rows - 1) / rows;
    widths.assign(cols, 0);
    for (size_t i = 0; i < names.size(); ++i) {
      widths[i / rows] = std::max(widths[i / rows], DisplayWidth(names[i]));
    }
    size_t total = 0;
    for (size_t w : widths) total += w + 2;
    if (total - 2 <= width || cols == 1) break;
  }
  for (size_t r = 0; r < rows; ++r) {
    std::string line;
    for (size_t c = 0; c < widths.size(); ++c) {
      const size_t i = c * rows + r;
      if (i >= names.size()) break;
      line += names[i];
      if ((c + 1) * rows + r < names.size()) line.append(widths[c] - DisplayWidth(names[i]) + 2, ' ');
    }
    text += line + "\n";
  }
  return text;
}

}  // namespace layerfs
