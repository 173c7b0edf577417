// The bodies of the libFuzzer targets, kept apart from their LLVMFuzzerTestOneInput so that the
// unit tests replay the inputs in fuzz/regressions/ with the same code in every build.
//
// Each returns 0, and aborts (with a message on stderr) when an input breaks an invariant that no
// input may break: an index the builder wrote that does not validate, an entry that cannot be
// found by its own path, a crash in the code below.
#ifndef LAYERFS_FUZZ_FUZZ_TARGETS_H_
#define LAYERFS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace layerfs::fuzz {

// The input is a layer blob (plain tar, or gzip or zstd by its magic number): read with ReadTar,
// indexed with IndexBuilder, the index reopened with LayerIndex and merged with MergedTree. A
// compressed blob is also read in place through the checkpoints found, and must give the bytes
// the sequential pass decompressed.
int TarIndex(const uint8_t* data, size_t size);

// The input is a layer index file (its checksum field is made to match, so that the fuzzer gets
// past it): validated by LayerIndex, then every accessor and a merged tree over it exercised,
// reads included (through its checkpoints when it has some).
int LayerIndexBytes(const uint8_t* data, size_t size);

// The first byte picks the role of the rest in an otherwise valid image, loaded with LoadImage:
//   0 index.json, 1 docker manifest.json, 2 the OCI manifest blob, 3 the config blob,
//   4 the whole image as an archive file.
int Manifest(const uint8_t* data, size_t size);

// Inputs for Manifest(): one valid image in each role (for the seed corpus).
std::vector<std::string> ManifestSeeds();

// Sets up what every target needs once (the UTF-8 locale libarchive reads names in).
void Init();

}  // namespace layerfs::fuzz

#endif  // LAYERFS_FUZZ_FUZZ_TARGETS_H_
