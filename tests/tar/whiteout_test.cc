#include "tar/whiteout.h"

#include <catch2/catch.hpp>

namespace layerfs {
namespace {

TEST_CASE("ClassifyName: ordinary names, including ones that merely contain .wh.", "[tar]") {
  for (const char* name : {"file", ".wh", ".whatever", "a.wh.b", "..wh.x", ".Wh.x"}) {
    INFO(name);
    CHECK(ClassifyName(name).kind == NameKind::kPlain);
  }
}

TEST_CASE("ClassifyName: .wh.NAME is a whiteout of NAME", "[tar]") {
  ClassifiedName c = ClassifyName(".wh.passwd");
  CHECK(c.kind == NameKind::kWhiteout);
  CHECK(c.target == "passwd");
  CHECK(ClassifyName(".wh..hidden").target == ".hidden");
  CHECK(ClassifyName(".wh....").kind == NameKind::kWhiteout);
}

TEST_CASE("ClassifyName: the opaque marker and other .wh..wh. names", "[tar]") {
  CHECK(ClassifyName(".wh..wh..opq").kind == NameKind::kOpaque);
  CHECK(ClassifyName(".wh..wh.plnk").kind == NameKind::kMeta);
  CHECK(ClassifyName(".wh..wh.aufs").kind == NameKind::kMeta);
  CHECK(ClassifyName(".wh..wh..opq2").kind == NameKind::kMeta);
}

TEST_CASE("ClassifyName: whiteouts naming nothing usable are invalid", "[tar]") {
  CHECK(ClassifyName(".wh.").kind == NameKind::kInvalid);
  CHECK(ClassifyName(".wh..").kind == NameKind::kInvalid);
  CHECK(ClassifyName(".wh...").kind == NameKind::kInvalid);
}

}  // namespace
}  // namespace layerfs
