#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tar/tar_reader.h"

int main(int argc, char* argv[]) {
  layerfs::InitArchiveLocale();
  return Catch::Session().run(argc, argv);
}
