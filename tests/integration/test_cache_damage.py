"""A damaged cache is never trusted, and hostile image manifests are refused, end to end.

Cache: after a first mount has filled the cache, an index is truncated, has a bit flipped, claims
another format version, or is replaced by a symlink (to a valid index of another layer, or to a
file outside the cache); the next mount detects it (magic, version, size and checksum in its
header, O_NOFOLLOW), rebuilds it and shows the right tree. Two processes indexing the same blob at
once both mount and leave one good index.
"""
import json
import os
import shutil
import subprocess

import pytest

import make_image
from conftest import assert_same_tree, is_mounted, layerfs_binary, run_layerfs, wait_for


def index_files(cache):
    d = os.path.join(cache, "index", "sha256")
    return sorted(os.path.join(d, n) for n in os.listdir(d))


def flip_bit(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def damage_truncate(path, other):
    os.truncate(path, os.path.getsize(path) // 2)


def damage_flip_header(path, other):
    flip_bit(path, 100)


def damage_flip_entries(path, other):
    flip_bit(path, 256 + 64 + 20)  # the second entry's mode


def damage_flip_last_byte(path, other):
    flip_bit(path, os.path.getsize(path) - 1)


def damage_version(path, other):
    with open(path, "r+b") as f:  # the version field follows the 8-byte magic
        f.seek(8)
        version = int.from_bytes(f.read(4), "little")
        f.seek(8)
        f.write((version + 1).to_bytes(4, "little"))


def damage_symlink_to_other(path, other):
    os.unlink(path)
    os.symlink(other, path)


def damage_symlink_outside(path, other):
    outside = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        path)))), "outside-file")
    with open(outside, "wb") as f:
        f.write(b"not an index\n")
    os.unlink(path)
    os.symlink(outside, path)


def damage_empty(path, other):
    os.truncate(path, 0)


DAMAGE = [damage_truncate, damage_flip_header, damage_flip_entries, damage_flip_last_byte,
          damage_version, damage_symlink_to_other, damage_symlink_outside, damage_empty]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__[len("damage_"):])
def test_damaged_index_is_rebuilt_not_trusted(damage, image, mounter, tmp_path):
    cache = str(tmp_path / "cache")
    form = image.form("oci-plain")
    m = mounter.mount(form, cache=cache)
    assert_same_tree(m.path, image.rootfs, image.implied)
    assert mounter.unmount(m) == []
    indexes = index_files(cache)
    assert len(indexes) == 5
    victim, other = indexes[0], indexes[1]
    outside = os.path.join(str(tmp_path), "outside-file")
    damage(victim, other)
    outside_before = open(outside, "rb").read() if os.path.exists(outside) else None

    m = mounter.mount(form, cache=cache)
    assert_same_tree(m.path, image.rootfs, image.implied)
    log = m.log()
    assert "cached index unusable" in log and "rebuilding" in log, log
    assert "1 indexed" in log, log
    m.assert_healthy()
    assert mounter.unmount(m) == []
    assert not os.path.islink(victim) and os.path.isfile(victim)
    if outside_before is not None:
        assert open(outside, "rb").read() == outside_before
    # Rebuilt once: the next mount uses it.
    m = mounter.mount(form, cache=cache)
    assert "(0 indexed" in m.log(), m.log()
    assert "cached index unusable" not in m.log()


def test_two_processes_indexing_the_same_blobs_at_once(image, mounter, tmp_path):
    """Two mounts started together on one empty cache: both index every layer, both serve the
    image, and the cache ends with one valid index per layer and no temporary file."""
    cache = str(tmp_path / "cache")
    form = image.form("oci")  # gzip: both also write the uncompressed copies
    procs, mnts = [], []
    for i in range(2):
        mnt = str(tmp_path / ("mnt%d" % i))
        os.mkdir(mnt)
        mnts.append(mnt)
    for mnt in mnts:
        procs.append(subprocess.Popen([layerfs_binary(), "-v", "mount", form, mnt, "--cache",
                                       cache, "--read-only"], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
        for p, out in zip(procs, outs):
            assert p.returncode == 0, out
        for mnt in mnts:
            assert wait_for(lambda: is_mounted(mnt), 10)
            assert_same_tree(mnt, image.rootfs, image.implied)
    finally:
        for mnt in mnts:
            if is_mounted(mnt):
                subprocess.run(["fusermount3", "-u", mnt])
        wait_for(lambda: not any(is_mounted(m) for m in mnts), 10)
    files = [os.path.join(dp, n) for dp, _, ns in os.walk(cache) for n in ns]
    assert not [f for f in files if ".tmp-" in f], files
    assert len(index_files(cache)) == 5
    m = mounter.mount(form, cache=cache)
    assert "cached index unusable" not in m.log()
    assert_same_tree(m.path, image.rootfs, image.implied)


# --- hostile manifests and indexes, through the command line ---------------------------------------

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def small_layout(tmp_path, name="oci"):
    l = make_image.Layer()
    l.file("f", "f\n")
    return make_image.write_layout(str(tmp_path), name, [l.close()])


def put_blob(layout, data):
    digest = make_image.sha256(data)
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def set_index(layout, index):
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


def refused(tmp_path, image, *mentions):
    mnt = str(tmp_path / "mnt-cli")
    os.makedirs(mnt, exist_ok=True)
    r = run_layerfs("mount", image, mnt, "--cache", str(tmp_path / "cache-cli"), "--read-only",
                    timeout=60)
    lines = r.stderr.splitlines()
    assert r.returncode == 1, r.stderr
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), r.stderr
    for word in mentions:
        assert word in lines[0], "%r not in %s" % (word, lines[0])
    assert not is_mounted(mnt)


def test_index_that_refers_to_itself(tmp_path):
    """index.json names an index blob that lists itself. No blob can hold its own sha256, so the
    file stored under that name fails its digest check: the cycle ends at the first re-read."""
    layout = small_layout(tmp_path)
    self_digest = make_image.sha256(b"an index that lists itself")
    loop = json.dumps({"schemaVersion": 2, "manifests": [dict(
        mediaType=MT_INDEX, digest="sha256:" + self_digest, size=0)]}).encode()
    with open(os.path.join(layout, "blobs", "sha256", self_digest), "wb") as f:
        f.write(loop)
    set_index(layout, {"schemaVersion": 2, "manifests": [dict(
        mediaType=MT_INDEX, digest="sha256:" + self_digest, size=len(loop))]})
    refused(tmp_path, layout, self_digest, "does not match its digest")


def test_indexes_nested_too_deeply(tmp_path):
    layout = small_layout(tmp_path)
    with open(os.path.join(layout, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    for _ in range(12):
        blob = json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()
        desc = dict(put_blob(layout, blob), mediaType=MT_INDEX)
    set_index(layout, {"schemaVersion": 2, "manifests": [desc]})
    refused(tmp_path, layout, "nested too deeply")


@pytest.mark.parametrize("digest,mention", [
    ("sha512:" + "ab" * 64, 'algorithm "sha512" is not supported'),
    ("sha256:" + "ab" * 31, "a sha256 digest has 64 hex digits"),
    ("sha256:" + "AB" * 32, "not lowercase hex"),
    ("sha256:../../../../etc/passwd", "sha256"),
])
def test_digest_of_another_algorithm_or_length(tmp_path, digest, mention):
    layout = small_layout(tmp_path)
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    index["manifests"][0]["digest"] = digest
    set_index(layout, index)
    refused(tmp_path, layout, "index.json", mention)


def test_json_nested_deeply_and_manifests_too_large(tmp_path):
    layout = small_layout(tmp_path)
    with open(os.path.join(layout, "index.json"), "w") as f:
        f.write("[" * 100000 + "]" * 100000)
    refused(tmp_path, layout, "nested deeper than")
    with open(os.path.join(layout, "index.json"), "w") as f:
        f.write('{"schemaVersion": 2, "manifests": [], "pad": "' + "x" * (17 << 20) + '"}')
    refused(tmp_path, layout, "index.json", "too large")


def test_layer_listed_twice_mounts_once(tmp_path, mounter):
    l = make_image.Layer()
    l.file("f", "f\n")
    tar = l.close()
    layout = make_image.write_layout(str(tmp_path), "oci", [tar, tar])
    m = mounter.mount(layout)
    assert os.listdir(m.path) == ["f"]
    m.assert_healthy()


def test_docker_manifest_paths_leaving_the_image(tmp_path):
    l = make_image.Layer()
    l.file("f", "f\n")
    tar = l.close()
    d = tmp_path / "docker"
    d.mkdir()
    (tmp_path / "outside.tar").write_bytes(tar)
    (d / "config.json").write_bytes(make_image.config_json([make_image.sha256(tar)]))
    (d / "sub").mkdir()
    for path in ("../outside.tar", str(tmp_path / "outside.tar"), "sub/../../outside.tar"):
        (d / "manifest.json").write_text(json.dumps(
            [{"Config": "config.json", "RepoTags": [], "Layers": [path]}]))
        refused(tmp_path, str(d), "points outside the image")
    os.symlink("../outside.tar", str(d / "link.tar"))
    (d / "manifest.json").write_text(json.dumps(
        [{"Config": "config.json", "RepoTags": [], "Layers": ["link.tar"]}]))
    refused(tmp_path, str(d), "link.tar", "points outside the image")


def test_symlinked_blobs_directory_escaping_the_layout(tmp_path):
    layout = small_layout(tmp_path)
    elsewhere = str(tmp_path / "elsewhere")
    shutil.move(os.path.join(layout, "blobs"), elsewhere)
    os.symlink(os.path.join("..", "elsewhere"), os.path.join(layout, "blobs"))
    refused(tmp_path, layout, "points outside the image")
