"""A layer blob damaged while mounted: reads of its files must fail with EIO (never return other
bytes than the image's), other layers keep reading fine, and the daemon keeps serving.

The image is the uncompressed docker-save directory, whose layer files layerfs reads in place, and
the gzip OCI layout, whose layers it reads in place through their checkpoints.
"""
import errno
import json
import os
import tarfile

import pytest

import make_image
from conftest import is_mounted

TARGET = "big/random.bin"  # layer 0
TARGET_BYTES = make_image.pattern("random", 300 * 1024)
OTHER_LAYERS = {  # never read before the damage, so not in the page cache
    "names/with space.txt": b"space\n",
    "etc/shadowed": b"version 3: the one that shows\n",
    "sym2dir/file": b"in a directory that replaced a symlink\n",
}


@pytest.fixture(params=["docker", "oci"])
def damaged(request, image, mounter, tmp_path):
    """Mounts a private copy of the docker dir or the gzip OCI layout; returns (mount, layer 0
    path, an offset in that blob inside TARGET's data)."""
    form = request.param
    d = image.copy(form, str(tmp_path / form))
    if form == "docker":
        with open(os.path.join(d, "manifest.json")) as f:
            layer = os.path.join(d, json.load(f)[0]["Layers"][0])
        with tarfile.open(layer) as t:
            offset = t.getmember("./" + TARGET).offset_data
        m = mounter.mount(os.path.join(d, "manifest.json"))
    else:
        def blob(digest):
            return os.path.join(d, "blobs", "sha256", digest.split(":")[1])
        with open(os.path.join(d, "index.json")) as f:
            manifest = json.load(f)["manifests"][0]["digest"]
        with open(blob(manifest)) as f:
            layer = blob(json.load(f)["layers"][0]["digest"])
        # The random bytes compress to nothing less than themselves: most of the blob is them.
        offset = os.path.getsize(layer) // 3
        m = mounter.mount(d)
    os.listdir(m.join("big"))
    return m, layer, offset


def read_or_errno(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        return e.errno


def check_after_damage(m):
    got = read_or_errno(m.join(TARGET))
    if isinstance(got, bytes):
        pytest.fail("reading %s after its blob was damaged returned %d bytes (%s) instead of "
                    "failing with EIO" % (TARGET, len(got),
                                          "the image's bytes" if got == TARGET_BYTES
                                          else "NOT the image's bytes"))
    assert got == errno.EIO, errno.errorcode.get(got)
    for path, want in OTHER_LAYERS.items():
        assert read_or_errno(m.join(path)) == want, path
    # Undamaged files of the damaged layer: the right bytes or EIO, nothing else.
    assert read_or_errno(m.join("etc/hostname")) in (b"layerfs-test\n", errno.EIO)
    assert m.alive() and is_mounted(m.path)
    assert "bin" in os.listdir(m.path)
    # Still failing on a second try: no wrong bytes were cached.
    assert read_or_errno(m.join(TARGET)) == errno.EIO


def overwrite(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_overwritten_blob_reads_fail_with_eio(damaged):
    m, layer, offset = damaged
    overwrite(layer, offset + 8192, b"\x55" * 4096)
    check_after_damage(m)


def test_truncated_blob_reads_fail_with_eio(damaged):
    m, layer, offset = damaged
    os.truncate(layer, offset + 4096)
    check_after_damage(m)


def test_overwritten_blob_with_mtime_restored_reads_fail_with_eio(damaged):
    m, layer, offset = damaged
    st = os.stat(layer)
    overwrite(layer, offset + 8192, b"\x55" * 4096)
    os.utime(layer, ns=(st.st_atime_ns, st.st_mtime_ns))
    check_after_damage(m)


def test_blob_replaced_by_rename_reads_fail_with_eio(damaged):
    """A blob that disappears under the mount (here: replaced by a rename) fails its layer's reads
    like a changed one, and the next mount verifies the new file."""
    m, layer, offset = damaged
    with open(layer, "rb") as f:
        data = bytearray(f.read())
    data[offset + 8192:offset + 8192 + 4096] = b"\x55" * 4096
    tmp = layer + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, layer)
    check_after_damage(m)
