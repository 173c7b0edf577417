"""Every form of the generated image mounts as exactly the tree umoci unpacks, cold and warm."""
import json
import os
import subprocess

import pytest

from conftest import FORMS, assert_same_tree, layerfs_binary

COMPRESSED = {"oci", "oci-index-json", "oci-zstd", "oci-archive"}


def cache_files(cache):
    """{relative path: (inode, mtime_ns, size)} of every file in a cache directory."""
    out = {}
    for root, _, files in os.walk(cache):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, cache)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


@pytest.mark.parametrize("form", sorted(FORMS))
def test_cold_mount_matches_reference(image, mounter, form):
    m = mounter.mount(image.form(form))
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()
    files = cache_files(m.cache)
    assert not [f for f in files if ".tmp-" in f], files
    indexes = [f for f in files if f.startswith("index/") and f.endswith(".idx")]
    assert len(indexes) == 5, "one index per layer expected: %s" % sorted(files)
    # Compressed layers are served in place from their blobs: the cache holds no uncompressed copy
    # of any layer.
    copies = [f for f in files if f.startswith("blobs/")]
    assert copies == [], sorted(files)
    r = subprocess.run([layerfs_binary(), "inspect", "--json", "--cache", m.cache, image.form(form)],
                       capture_output=True, text=True, check=True)
    for layer in json.loads(r.stdout)["layers"]:
        if form not in COMPRESSED:
            assert layer["served"] == "in place" and layer["checkpoints"] == 0
        else:
            assert layer["served"].startswith("zstd frames" if form == "oci-zstd" else "checkpoints")
            assert layer["checkpoints"] >= 1


@pytest.mark.parametrize("form", sorted(FORMS))
def test_warm_mount_matches_reference(image, mounter, form):
    first = mounter.mount(image.form(form))
    assert not mounter.unmount(first)
    before = cache_files(first.cache)
    m = mounter.mount(image.form(form), cache=first.cache)
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()
    assert cache_files(m.cache) == before, "the warm mount rewrote its cache"


@pytest.mark.parametrize("options", [
    ("--single-thread",),
    ("--threads", "2"),
    ("--read-only",),
    ("-o", "ro"),
    ("-o", "ro,timeout=0"),
    ("-o", "timeout=0.5", "-o", "default_permissions"),
], ids=" ".join)
def test_mount_options_serve_the_same_tree(image, mounter, options):
    m = mounter.mount(image.form("oci"), options=options)
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()


@pytest.mark.parametrize("form,ref", [
    ("oci", "test"),
    ("oci-archive", "test"),
    ("docker-archive", "localhost/layerfs-test:latest"),
    ("docker-dir", "layerfs-test:latest"),
])
def test_ref_picks_the_image(image, mounter, form, ref):
    m = mounter.mount(image.form(form), options=("--ref", ref))
    with open(m.join("etc/shadowed"), "rb") as f:
        assert f.read() == b"version 3: the one that shows\n"


def test_generated_image_is_deterministic(image, tmp_path):
    import make_image
    again = make_image.make_image(str(tmp_path / "again"))
    for form in ("docker.tar", "oci.tar", "oci-zstd/index.json", "oci-plain/index.json"):
        with open(os.path.join(image.root, form), "rb") as a, \
                open(os.path.join(again, form), "rb") as b:
            assert a.read() == b.read(), form


@pytest.mark.parametrize("form", ["oci", "oci-zstd"])
def test_compressed_layers_copy_up_and_read_in_place(image, mounter, form):
    """A writable mount of a compressed layout: a file of a compressed layer, copied up by an
    append, keeps its bytes (read in place from the blob through the checkpoints); reads in
    requests of every size give the same bytes as the reference tree; the span cache is used."""
    stats = os.path.join(mounter.new_dir("stats"), "stats.json")
    m = mounter.mount(image.form(form), writable=True, options=("-o", "stats=" + stats))
    target = "big/random.bin"
    with open(os.path.join(image.rootfs, target), "rb") as f:
        want = f.read()
    for size in (1, 4095, 65536, 1 << 20):
        with open(m.join(target), "rb", buffering=0) as f:
            got = b"".join(iter(lambda: f.read(size), b""))
        assert got == want, size
    with open(m.join(target), "ab") as f:
        f.write(b"!")
    with open(m.join(target), "rb") as f:
        assert f.read() == want + b"!"
    m.assert_healthy()
    assert not mounter.unmount(m)
    with open(stats) as f:
        span = json.load(f)["span_cache"]
    assert span["misses"] + span["prefetches"] >= 1 and span["hits"] >= 1, span
