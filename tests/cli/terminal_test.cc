#include "cli/terminal.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace layerfs {
namespace {

TEST_CASE("terminal: sizes as ls -h shows them", "[cli]") {
  CHECK(Size(0, false) == "0");
  CHECK(Size(1023, false) == "1023");
  CHECK(Size(1536, false) == "1.5K");
  CHECK(Size(300 * 1024, false) == "300K");
  CHECK(Size(12ull << 20, false) == "12M");
  CHECK(Size(3ull << 40, false) == "3.0T");
  CHECK(Size(123456789, true) == "123456789");
}

TEST_CASE("terminal: widths count code points; a cut ends in an ellipsis", "[cli]") {
  CHECK(DisplayWidth("abc") == 3);
  CHECK(DisplayWidth("h\xc3\xa9llo") == 5);  // é is two bytes, one column
  CHECK(Truncate("abcdef", 6) == "abcdef");
  CHECK(Truncate("abcdef", 4) == "abc…");
  CHECK(Truncate("\xc3\xa9\xc3\xa9\xc3\xa9", 2) == "\xc3\xa9…");
  CHECK(Truncate("abc", 0).empty());
}

TEST_CASE("terminal: a table fits its width, dropping columns and cutting the last", "[cli]") {
  Table t({{"N", true}, {"SIZE", true, 1}, {"PATH"}});
  t.Row({"1", "12K", "/usr/lib/python3.11/very/long/path/to/a/module.py"});
  t.Row({"10", "3", "/bin"});
  CHECK(t.Render(80) ==
        " N  SIZE  PATH\n"
        " 1   12K  /usr/lib/python3.11/very/long/path/to/a/module.py\n"
        "10     3  /bin\n");
  // Too narrow for every column: SIZE goes first, then PATH is cut.
  CHECK(t.Render(20) ==
        " N  PATH\n"
        " 1  /usr/lib/python…\n"  // 20 columns in all
        "10  /bin\n");
}

TEST_CASE("terminal: names in columns, top to bottom", "[cli]") {
  CHECK(Columns({}, 80).empty());
  CHECK(Columns({"a", "bb", "c", "dd", "e"}, 80) == "a  bb  c  dd  e\n");
  CHECK(Columns({"a", "bb", "c", "dd", "e"}, 8) == "a   dd\nbb  e\nc\n");
  CHECK(Columns({"long-name", "x"}, 4) == "long-name\nx\n");
}

}  // namespace
}  // namespace layerfs
