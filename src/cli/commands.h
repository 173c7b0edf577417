// The layerfs commands; main.cc parses the command line into these arguments.
#ifndef LAYERFS_CLI_COMMANDS_H_
#define LAYERFS_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "image/opened_image.h"

namespace layerfs {

struct MountArgs {
  ImageArgs image;
  std::string mountpoint;
  std::vector<std::string> options;  // -o, comma-separated lists
  bool read_only = false;
  std::string scratch;               // empty: an ephemeral scratch directory
  bool foreground = false;
  bool debug = false;
  bool single_thread = false;
  unsigned threads = 0;
  std::string owner = "image";       // image or self
  std::string prefetch = "all";      // docker:// read lazily: fetch the rest in the background
  std::string verify = "chunks";     // docker://: or full, every layer fetched and checked first
  bool push_index = false;           // docker://: publish the indexes if there are none
};
int RunMount(const MountArgs& args);

struct CommitArgs {
  ImageArgs image;
  std::string scratch;
  std::string out;
  std::string format = "oci";
  std::string compress;  // empty: gzip for oci, none for docker
  std::string tag;
};
int RunCommit(const CommitArgs& args);

struct BenchArgs {
  ImageArgs image;
  bool mount = false;  // also through a real mount
  bool json = false;
  unsigned passes = 3;
};
int RunBench(const BenchArgs& args);

// inspect, which, ls and diff: an image looked at without mounting it.
struct InspectArgs {
  enum class Command { kInspect, kWhich, kLs, kDiff };
  Command command = Command::kInspect;
  ImageArgs image;
  std::string path = "/";     // which, ls
  std::string layer;          // diff: a number from 1 or a digest prefix
  bool long_format = false;   // ls -l
  bool recursive = false;     // ls -R
  bool json = false;
  bool bytes = false;         // -b: sizes in bytes
};
int RunInspect(const InspectArgs& args);

// index push: an image's layer indexes published to its registry.
struct IndexArgs {
  ImageArgs image;
  std::string span;        // --span SIZE: checkpoint distance of the indexes built now
  std::string chunk_size;  // --chunk-size SIZE: the blob bytes one chunk digest covers
};
int RunIndexPush(const IndexArgs& args);

// What `layerfs --version` prints: this build, and the versions of the libraries it runs with.
std::string VersionText();

// Reports `s` as one error line and returns the exit status for it.
int Fail(const Status& s);

}  // namespace layerfs

#endif  // LAYERFS_CLI_COMMANDS_H_
