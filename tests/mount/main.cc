// The mount tests: Catch2 cases that mount real images with the layerfs binary.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "mount/mount_fixture.h"
#include "tar/tar_reader.h"

int main(int argc, char* argv[]) {
  layerfs::InitArchiveLocale();
  if (!layerfs::testing::CanMount()) {
    std::fprintf(stderr, "/dev/fuse is missing: the mount tests cannot run here\n");
    return 77;  // skipped
  }
  return Catch::Session().run(argc, argv);
}
