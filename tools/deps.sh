#!/usr/bin/env bash
# Installs the Debian packages a task needs, if any are missing.
#   tools/deps.sh build|test|corpus|bench|fuzz|demo ...
set -euo pipefail

build=(g++ meson ninja-build pkg-config fuse3 libfuse3-dev libarchive-dev libssl-dev libxxhash-dev
       nlohmann-json3-dev libcli11-dev libfmt-dev catch2 libbenchmark-dev libzstd-dev zlib1g-dev libisal-dev
       libcurl4-openssl-dev)
test=(python3 python3-pytest python3-pytest-xdist umoci attr zstd pigz gzip tar procps
      docker-registry skopeo apache2-utils openssl)
corpus=(mmdebstrap buildah podman skopeo umoci crun attr python3 uidmap)
bench=(fuse-overlayfs hyperfine fio python3 python3-matplotlib time)
fuzz=(clang libclang-rt-14-dev)
demo=(busybox-static python3)

want=()
for set in "$@"; do
  case $set in
    build) want+=("${build[@]}") ;;
    test) want+=("${test[@]}") ;;
    corpus) want+=("${corpus[@]}") ;;
    bench) want+=("${bench[@]}") ;;
    fuzz) want+=("${fuzz[@]}") ;;
    demo) want+=("${demo[@]}") ;;
    *) echo "tools/deps.sh: unknown package set '$set' (build, test, corpus, bench, fuzz, demo)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >/dev/null
"${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null
