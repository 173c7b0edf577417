// The byte sources under every read of a layer, and the blob digest.
#include "blob/byte_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

#include "blob/sha256.h"
#include "tests/util/tar_writer.h"

namespace layerfs {
namespace {

TEST_CASE("FileSource: a file changed after it was opened stays failed", "[index]") {
  testing::TempDir dir;
  const std::string path = dir.Sub("blob");
  testing::WriteFile(path, "0123456789");
  auto file = std::make_shared<UniqueFd>(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  REQUIRE(*file);
  auto source = FileSource::Open(file, 2, 6, path);
  REQUIRE(source.ok());
  CHECK((*source)->Intact());
  char buf[6];
  REQUIRE((*source)->ReadAt(0, buf, 6).ok());
  CHECK(std::string(buf, 6) == "234567");
  CHECK((*source)->ReadAt(1, buf, 6).code() == EINVAL);  // past its end
  CHECK((*source)->FileAt(4).pos == 6);
  CHECK((*source)->FileAt(4).length == 2);
  // Same size, new content: the ctime moves.
  testing::LetTimestampsSettle();
  REQUIRE(::pwrite(file->get(), "X", 1, 3) == 1);
  CHECK_FALSE((*source)->Intact());
  // Put back byte for byte, it is still not the file that was verified.
  REQUIRE(::pwrite(file->get(), "3", 1, 3) == 1);
  CHECK_FALSE((*source)->Intact());
}

TEST_CASE("CopySource: a file's bytes by the kernel, a memory source's through a buffer",
          "[blob]") {
  const std::string data = testing::RandomBytes(3u << 20, 5);  // more than one 1 MiB buffer
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("blob"), "HEAD" + data);
  auto file = std::make_shared<UniqueFd>(::open(dir.Sub("blob").c_str(), O_RDONLY | O_CLOEXEC));
  auto from_file = FileSource::Open(file, 4, data.size(), dir.Sub("blob"));
  REQUIRE(from_file.ok());
  testing::MemorySource from_memory(data);
  for (const ByteSource* source : {static_cast<const ByteSource*>(from_file->get()),
                                   static_cast<const ByteSource*>(&from_memory)}) {
    UniqueFd out(::open(dir.Sub("out").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(CopySource(*source, 1000, data.size() - 2000, out.get(), 7).ok());
    const std::string got = testing::ReadFile(dir.Sub("out"));
    CHECK(got.size() == data.size() - 2000 + 7);
    CHECK((got.substr(7) == data.substr(1000, data.size() - 2000)));
  }
  // Past the end of the source: an error, nothing made up.
  UniqueFd out(::open(dir.Sub("short").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  CHECK_FALSE(CopySource(from_memory, data.size() - 10, 20, out.get(), 0).ok());
}

TEST_CASE("sha256: streamed in pieces or at once, the known digests", "[blob]") {
  CHECK(Sha256::Of("", 0).hex() ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Sha256::Of("abc", 3).hex() ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string data = testing::RandomBytes(100000, 8);
  Sha256 h;
  for (size_t i = 0; i < data.size(); i += 777)
    h.Update(data.data() + i, std::min<size_t>(777, data.size() - i));
  CHECK(h.Finish() == Sha256::Of(data.data(), data.size()));
}

}  // namespace
}  // namespace layerfs
