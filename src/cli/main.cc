// layerfs: mount a container image straight from its layer tars.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "base/log.h"
#include "cli/commands.h"
#include "fuse/session.h"
#include "fuse/unmount.h"
#include "tar/tar_reader.h"

namespace layerfs {

int Fail(const Status& s) {
  LogError("{}", s.message());
  return 1;
}

namespace {

// The options every command that reads an image takes.
void AddImageOptions(CLI::App* cmd, ImageArgs* args) {
  cmd->add_option("IMAGE", args->image,
                  "An image directory (docker save or OCI layout) or its manifest.json, an image "
                  "archive (docker save -o image.tar), oci:DIR[:REF], docker-archive:PATH, "
                  "oci-archive:PATH, or docker://[HOST[:PORT]/]REPO[:TAG|@DIGEST] in a registry")
      ->required();
  cmd->add_option("--cache", args->cache,
                  "Cache directory for layer indexes and uncompressed copies of compressed "
                  "layers (default: $XDG_CACHE_HOME/layerfs or ~/.cache/layerfs)");
  cmd->add_option("--ref", args->ref,
                  "Which image to use when there are several: an OCI ref name "
                  "(org.opencontainers.image.ref.name) or a docker RepoTag");
  cmd->add_option("--platform", args->platform,
                  "OS/ARCH[/VARIANT] to pick from a multi-platform index (default: this host)");
  RegistryOptions& r = args->registry;
  cmd->add_option("--creds", r.creds,
                  "docker://: USER:PASSWORD for the registry (default: the auth files podman "
                  "and docker read)");
  cmd->add_option("--authfile", r.authfile,
                  "docker://: the auth file to read credentials from (podman's auth.json format)");
  cmd->add_option("--cert-dir", r.cert_dir,
                  "docker://: a directory of CA certificates (*.crt) and a client certificate "
                  "(*.cert, *.key) for the registry (default: /etc/containers/certs.d/HOST)");
  cmd->add_flag("--tls-verify", r.tls_verify,
                "docker://: verify the registry's TLS certificate (default true); "
                "--tls-verify=false also reaches plain-HTTP registries");
}

constexpr const char* kUsage =
    "usage: layerfs mount|umount|commit|inspect|which|ls|diff|bench|index ARGS... [--help]";

// A command line that does not parse: one `layerfs: error:` line, exit status 2.
int UsageError(const CLI::App& app, const CLI::ParseError& e) {
  std::string command = "layerfs";
  const CLI::App* at = &app;
  while (true) {
    std::vector<CLI::App*> parsed = at->get_subcommands();
    if (parsed.empty()) break;
    at = parsed.front();
    command += " " + at->get_name();
  }
  std::string what = e.what();
  if (at == &app && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
    what = "which command? " + std::string(kUsage);
  }
  LogError("{}: {} (see {} --help)", command, what, command);
  return 2;
}

}  // namespace
}  // namespace layerfs

int main(int argc, char** argv) {
  using namespace layerfs;
  InitArchiveLocale();

  CLI::App app{"layerfs: mount a container image straight from its layer tars\n\n" +
               std::string(kUsage)};
  app.name("layerfs");
  app.require_subcommand(1);
  app.fallthrough();  // -v and -q also after the subcommand
  app.set_version_flag("--version", [] { return VersionText(); },
                       "Print the version of layerfs and of the libraries it runs with");
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "Say more (repeat for debug output)");
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "Print errors only");

  MountArgs m;
  CLI::App* mount = app.add_subcommand("mount", "Mount IMAGE at MOUNTPOINT");
  AddImageOptions(mount, &m.image);
  mount->add_option("MOUNTPOINT", m.mountpoint, "Existing directory to mount on")->required();
  mount->add_flag("--read-only", m.read_only,
                  "Mount read-only: no scratch directory, writes fail with EROFS");
  mount->add_option("--scratch", m.scratch,
                    "Keep the changes in DIR (created if missing); a later mount of the same "
                    "image with the same DIR shows them again (default: a scratch directory under "
                    "$TMPDIR or /var/tmp, removed at unmount)");
  mount->add_flag("-f,--foreground", m.foreground, "Stay in the foreground until unmounted");
  mount->add_flag("-d,--debug", m.debug, "Log every FUSE request to stderr (implies -f)");
  mount->add_option("-o", m.options,
                    "Mount options, comma-separated: ro (as --read-only), rw; uidmapping=IMAGE:HOST:COUNT[:...] and gidmapping=... (show image id IMAGE as host id HOST, COUNT ids on; ids outside show as 65534); owners=native|xattr (keep owners, modes and device nodes of changed files in the scratch directory itself, as root does by default, or in xattrs); timeout=SECONDS (kernel caching of "
                    "names and attributes, default 86400); readahead=KIB (as root, the "
                    "mount's read-ahead, default 1024; 0 keeps the kernel's); and FUSE options "
                    "such as allow_other, allow_root, max_read=N, and as root suid,dev (mounts are "
                    "nosuid,nodev otherwise)")
      ->allow_extra_args(false);
  mount->add_option("--owner", m.owner,
                    "Who the files appear to belong to: image (the owners the image gives them, "
                    "default) or self (every file belongs to the caller, who can then write "
                    "anywhere in the tree; what the caller creates belongs to root in the image)")
      ->check(CLI::IsMember({"image", "self"}));
  mount->add_option("--prefetch", m.prefetch,
                    "docker:// images read lazily through a published index: all (default) also "
                    "fetches the rest of their layers in the background, demand reads first; "
                    "none fetches only what is read")
      ->check(CLI::IsMember({"all", "none"}));
  mount->add_option("--verify", m.verify,
                    "docker:// images: chunks (default) checks each chunk read lazily against the "
                    "published index before serving it, and each layer against its digest once "
                    "whole; full fetches every layer whole and checks it before the mount is ready")
      ->check(CLI::IsMember({"chunks", "full"}));
  mount->add_option("--read-timeout", m.image.registry.read_timeout_s,
                    "docker:// images read lazily: a read of data not fetched yet waits this many "
                    "seconds for the registry, then fails with EIO (default 30)")
      ->check(CLI::Range(1, 3600));
  mount->add_flag("--push-index", m.push_index,
                  "docker:// images without a published index: fetch the layers whole, index "
                  "them, and publish the indexes beside the image (as layerfs index push), so "
                  "that later mounts elsewhere are lazy");
  mount->add_option("--threads", m.threads, "Most worker threads serving requests (default 10)");
  mount->add_flag("--single-thread", m.single_thread, "Serve requests on one thread");

  CommitArgs c;
  CLI::App* commit = app.add_subcommand(
      "commit", "Write IMAGE plus the changes in the scratch directory DIR as a new image OUT");
  commit->add_option("DIR", c.scratch, "Scratch directory of a writable mount (--scratch)")
      ->required();
  AddImageOptions(commit, &c.image);
  commit->add_option("OUT", c.out, "New image directory to write (must not exist)")->required();
  commit->add_option("--format", c.format,
                     "oci (an OCI image layout, default) or docker (a docker-save directory)");
  commit->add_option("--compress", c.compress,
                     "Compression of the new layer: none, gzip or zstd (default: gzip for oci, "
                     "none for docker)");
  commit->add_option("--tag", c.tag,
                     "Name of the new image: its OCI ref name (default latest) or docker RepoTag "
                     "(default layerfs-commit:latest)");

  BenchArgs b;
  CLI::App* bench = app.add_subcommand(
      "bench", "Time path lookups in IMAGE: through its merged index, layer by layer, and "
               "(--mount) through a real mount");
  AddImageOptions(bench, &b.image);
  bench->add_flag("--mount", b.mount,
                  "Also mount the image: lstat every path and read every file through FUSE "
                  "(needs /dev/fuse)");
  bench->add_flag("--json", b.json, "Print one JSON document instead of a table");
  bench->add_option("--passes", b.passes, "Times each path is looked up (default 3)")
      ->check(CLI::Range(1u, 100u));

  // inspect, which, ls, diff: one argument struct, filled by whichever subcommand is given.
  InspectArgs in;
  auto add_output_flags = [&](CLI::App* cmd) {
    cmd->add_flag("--json", in.json, "Print one JSON document (its shape is in the README)");
    cmd->add_flag("-b,--bytes", in.bytes, "Sizes in bytes instead of K, M, G (1024-based)");
  };
  CLI::App* inspect = app.add_subcommand(
      "inspect", "List IMAGE's layers, bottom to top: sizes, entries, whiteouts, and the bytes "
                 "later layers hide");
  AddImageOptions(inspect, &in.image);
  add_output_flags(inspect);
  CLI::App* which = app.add_subcommand(
      "which", "Which layer serves PATH in IMAGE's merged view, and which lower layers also "
               "have it or delete it");
  AddImageOptions(which, &in.image);
  which->add_option("PATH", in.path, "Path in the image")->required();
  add_output_flags(which);
  CLI::App* ls = app.add_subcommand("ls", "List PATH (default /) in IMAGE's merged view, as ls "
                                          "-A would in a mount");
  AddImageOptions(ls, &in.image);
  ls->add_option("PATH", in.path, "Directory or file in the image (default /)");
  ls->add_flag("-l", in.long_format,
               "Long format: mode, links, owner, group, size, mtime (UTC), layer, name");
  ls->add_flag("-R", in.recursive, "List directories below PATH too");
  add_output_flags(ls);
  CLI::App* diff = app.add_subcommand(
      "diff", "What layer N of IMAGE adds, changes and deletes relative to the layers below it");
  AddImageOptions(diff, &in.image);
  diff->add_option("N", in.layer,
                   "Layer number, 1 for the bottom layer (as in `layerfs inspect`), or a prefix "
                   "of the layer's digest or diff_id")
      ->required();
  add_output_flags(diff);

  IndexArgs ix;
  CLI::App* index = app.add_subcommand("index", "Layer indexes in a registry");
  index->require_subcommand(1);
  CLI::App* index_push = index->add_subcommand(
      "push", "Build the layer indexes of a docker:// IMAGE (fetching what is not cached) and "
              "publish them to its registry beside it, as an OCI artifact that refers to it");
  AddImageOptions(index_push, &ix.image);
  index_push->add_option("--span", ix.span,
                         "The checkpoint distance of compressed layers' indexes, 64K to 64M "
                         "(default 1M; as mount's -o span=; a cached index of another span is "
                         "rebuilt)");
  index_push->add_option("--chunk-size", ix.chunk_size,
                         "The bytes of a layer blob that one published chunk digest covers, and "
                         "that a lazy mount fetches at once, 64K to 64M (default 256K)");

  std::string umount_point;
  bool lazy = false;
  CLI::App* umount = app.add_subcommand("umount", "Unmount a layerfs mount");
  umount->add_option("MOUNTPOINT", umount_point, "Mount point")->required();
  umount->add_flag("-z,--lazy", lazy, "Detach now, clean up when no longer busy");

  // `layerfs help [COMMAND]` is `layerfs [COMMAND] --help`.
  std::vector<std::string> args(argv + 1, argv + argc);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  if (!args.empty() && args.back() == "help") {
    args.pop_back();
    args.insert(args.begin(), "--help");
  }
  // The first word that is not a flag names the command (the top level's flags take no value).
  for (auto it = args.rbegin(); it != args.rend(); ++it) {
    if (it->empty() || (*it)[0] == '-') continue;
    try {
      app.get_subcommand(*it);
    } catch (const CLI::OptionNotFound&) {
      LogError("layerfs: unknown command '{}'; {} (see layerfs --help)", *it, kUsage);
      return 2;
    }
    break;
  }
  try {
    app.parse(args);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return UsageError(app, e);
  }
  SetLogLevel(quiet            ? LogLevel::kError
              : verbosity >= 2 ? LogLevel::kDebug
              : verbosity == 1 ? LogLevel::kInfo
                               : LogLevel::kWarning);

  if (mount->parsed()) return RunMount(m);
  if (bench->parsed()) return RunBench(b);
  if (commit->parsed()) return RunCommit(c);
  if (index_push->parsed()) return RunIndexPush(ix);
  if (inspect->parsed() || which->parsed() || ls->parsed() || diff->parsed()) {
    in.command = inspect->parsed() ? InspectArgs::Command::kInspect
                 : which->parsed() ? InspectArgs::Command::kWhich
                 : ls->parsed()    ? InspectArgs::Command::kLs
                                   : InspectArgs::Command::kDiff;
    return RunInspect(in);
  }
  if (umount->parsed()) {
    Status s = Unmount(umount_point, lazy);
    if (!s.ok()) {
      LogError("{}", s.message());
      return 1;
    }
    return 0;
  }
  return 2;
}
