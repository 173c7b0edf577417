"""The real multi-layer Debian image ($LAYERFS_CORPUS, built by tests/corpus/build-image.sh):
every form mounts as umoci's rootfs/, and the checks a user would make on it hold."""
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest

from conftest import Mounter, assert_same_tree, cache_file_sizes, layerfs_binary

pytestmark = pytest.mark.corpus

FORMS = ["docker/manifest.json", "docker.tar", "oci", "oci-plain", "oci-zstd"]


@pytest.mark.parametrize("form", FORMS)
def test_form_matches_reference(corpus, mounter, form):
    m = mounter.mount(os.path.join(corpus, form))
    assert_same_tree(m.path, os.path.join(corpus, "rootfs"))
    m.assert_healthy()


@pytest.fixture(scope="module")
def mnt(corpus, tmp_path_factory):
    """One mount shared by the read-only spot checks below (a cold mount costs seconds)."""
    mounter = Mounter(tmp_path_factory.mktemp("corpus-mount"))
    try:
        yield mounter.mount(os.path.join(corpus, "oci"))
    finally:
        problems = mounter.cleanup()
    assert not problems, problems


def test_python_has_its_capability(mnt):
    cap = os.getxattr(mnt.join("usr/bin/python3.11"), "security.capability")
    assert len(cap) == 20 and cap[3] == 0x02, cap  # VFS_CAP_REVISION_2
    assert "security.capability" in os.listxattr(mnt.join("usr/bin/python3.11"))


def test_hard_linked_app_files(mnt):
    a, b = os.lstat(mnt.join("app/hello.txt")), os.lstat(mnt.join("app/hello-link.txt"))
    assert a.st_ino == b.st_ino
    assert a.st_nlink == b.st_nlink == 2


def test_replaced_and_removed_paths(mnt):
    assert stat.S_ISDIR(os.lstat(mnt.join("etc/issue.net")).st_mode)
    assert os.listdir(mnt.join("usr/share/doc")) == ["README"]
    assert not os.path.lexists(mnt.join("usr/share/locale"))
    assert not os.path.lexists(mnt.join("etc/motd"))


def test_python_runs_in_a_chroot(mnt):
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    r = subprocess.run([chroot, mnt.path, "python3", "-c",
                        "import json, sqlite3; print(sqlite3.sqlite_version, json.dumps([1]))"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("[1]"), r.stdout
    mnt.assert_healthy()


def _inspect(cache, image):
    r = subprocess.run([layerfs_binary(), "inspect", "--json", "--cache", cache, image],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def _mount_in_place(corpus, mounter, image):
    """Mounts `image`, checks it against umoci's rootfs and that the cache holds no uncompressed
    copy of a layer; returns (the cache's files and sizes, `inspect --json`)."""
    m = mounter.mount(image)
    assert_same_tree(m.path, os.path.join(corpus, "rootfs"))
    m.assert_healthy()
    files = cache_file_sizes(m.cache)
    assert not [f for f in files if f.startswith("blobs/")], sorted(files)
    return files, _inspect(m.cache, image)


def test_gzip_layout_is_served_in_place_with_indexes_only(corpus, mounter):
    """The gzip OCI layout: the cache holds the layer indexes (with their checkpoints) and no
    uncompressed copy of any layer, in under 4% of the unpacked size."""
    files, info = _mount_in_place(corpus, mounter, os.path.join(corpus, "oci"))
    assert all(l["served"].startswith("checkpoints") for l in info["layers"]), info["layers"]
    unpacked = info["total"]["uncompressed_size"]
    cached = sum(files.values())
    assert cached <= 0.04 * unpacked, (cached, unpacked, files)


@pytest.fixture(scope="module")
def pzstd_layout(corpus, tmp_path_factory):
    """The corpus image with every layer recompressed by pzstd: zstd of many independent frames."""
    src = os.path.join(corpus, "oci")
    dst = str(tmp_path_factory.mktemp("pzstd") / "oci")
    blobs = os.path.join(dst, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest

    def blob(digest):
        with open(os.path.join(src, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
            return f.read()

    index = json.loads(open(os.path.join(src, "index.json")).read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    put(blob(manifest["config"]["digest"]))
    for layer in manifest["layers"]:
        tar = gzip.decompress(blob(layer["digest"]))
        z = subprocess.run(["pzstd", "-p", "2", "-q", "-c"], input=tar, capture_output=True,
                           check=True).stdout
        layer["digest"] = put(z)
        layer["size"] = len(z)
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
    text = json.dumps(manifest).encode()
    index["manifests"] = [dict(index["manifests"][0], digest=put(text), size=len(text))]
    with open(os.path.join(dst, "index.json"), "w") as f:
        json.dump(index, f)
    shutil.copy(os.path.join(src, "oci-layout"), dst)
    return dst


def test_pzstd_layout_is_served_in_place(corpus, pzstd_layout, mounter):
    _, info = _mount_in_place(corpus, mounter, pzstd_layout)
    big = [l for l in info["layers"] if l["uncompressed_size"] > 16 << 20]
    assert big, info["layers"]
    for l in info["layers"]:
        assert l["served"].startswith("zstd frames"), l
    assert all(l["checkpoints"] > 1 for l in big), big
