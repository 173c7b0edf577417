"""The command line and bad input: one `layerfs: error:` line naming the file and the problem, a
non-zero exit, nothing mounted, and nothing half-written in the cache."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from conftest import daemon_pids, is_mounted, layerfs_binary, run_layerfs


# --- helpers -----------------------------------------------------------------------------------

def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def oci_manifest(layout):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    digest = index["manifests"][0]["digest"].split(":")[1]
    with open(os.path.join(layout, "blobs", "sha256", digest)) as f:
        return index, json.load(f)


def oci_layer_blob(layout, n):
    _, manifest = oci_manifest(layout)
    return os.path.join(layout, "blobs", "sha256", manifest["layers"][n]["digest"].split(":")[1])


def rewrite_oci_manifest(layout, edit):
    """Applies edit() to the image manifest and stores it under its new digest."""
    index, manifest = oci_manifest(layout)
    edit(manifest)
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    index["manifests"][0].update(digest="sha256:" + digest, size=len(data))
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


def docker_layer(docker_dir, n):
    with open(os.path.join(docker_dir, "manifest.json")) as f:
        return os.path.join(docker_dir, json.load(f)[0]["Layers"][n])


def flip_byte_in_file_data(tar_path, member_suffix, delta=1000):
    """Flips one byte inside a member's data, so that the tar still parses."""
    with tarfile.open(tar_path) as t:
        member = next(m for m in t.getmembers() if m.name.endswith(member_suffix))
    offset = member.offset_data + delta
    with open(tar_path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def cache_listing(cache):
    out = []
    for root, dirs, files in os.walk(cache):
        out += [os.path.relpath(os.path.join(root, n), cache) for n in dirs + files]
    return sorted(out)


def assert_fails_cleanly(result, mountpoint, cache=None, mentions=(), bad_layers=()):
    """One error line naming what it must, exit 1, no mount, no partial or bad cache files."""
    lines = result.stderr.splitlines()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), result.stderr
    for word in mentions:
        assert word in lines[0], "%r not in: %s" % (word, lines[0])
    assert not is_mounted(mountpoint)
    assert not daemon_pids(mountpoint)
    if cache is not None and os.path.isdir(cache):
        files = cache_listing(cache)
        assert not [f for f in files if ".tmp-" in f], files
        for hex_ in bad_layers:
            assert not [f for f in files if hex_ in f], "cache keeps files for a bad layer: %s" % (
                files,)


@pytest.fixture
def dirs(tmp_path, image):
    """A mount point, a cache path, and private copies of the image forms to damage."""
    class Dirs:
        mnt = str(tmp_path / "mnt")
        cache = str(tmp_path / "cache")

        def copy(self, form):
            return image.copy(form, str(tmp_path / form.replace("/", "-")))
    os.mkdir(Dirs.mnt)
    return Dirs()


def mount(image_path, d, *extra):
    return run_layerfs("mount", image_path, d.mnt, "--cache", d.cache, *extra)


# --- bad images --------------------------------------------------------------------------------

def test_missing_image(dirs):
    r = mount("/nonexistent/image.tar", dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["/nonexistent/image.tar", "No such file"])


def test_not_an_image(dirs, tmp_path):
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    r = mount(str(empty), dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, [str(empty), "not an image"])


def test_malformed_manifest_json(dirs):
    d = dirs.copy("docker")
    with open(os.path.join(d, "manifest.json"), "w") as f:
        f.write('[{"Config": "x.json", "Layers": [')
    r = mount(os.path.join(d, "manifest.json"), dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["manifest.json", "not valid JSON"])


def test_manifest_json_of_wrong_shape(dirs):
    d = dirs.copy("docker")
    with open(os.path.join(d, "manifest.json"), "w") as f:
        f.write('[{"Config": 5, "Layers": []}]')
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["manifest.json", "Config"])


def test_malformed_index_json(dirs):
    d = dirs.copy("oci-plain")
    with open(os.path.join(d, "index.json"), "w") as f:
        f.write('{"schemaVersion": 2, "manifests": [}')
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["index.json", "not valid JSON"])


def test_oci_manifest_names_a_missing_blob(dirs):
    d = dirs.copy("oci-plain")
    blob = oci_layer_blob(d, 2)
    os.unlink(blob)
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, [": layers[2] names the blob of layer 3 of",
                                                   "which the image does not hold",
                                                   os.path.basename(blob)])


def test_index_names_a_missing_manifest(dirs):
    d = dirs.copy("oci-plain")
    with open(os.path.join(d, "index.json")) as f:
        index = json.load(f)
    index["manifests"][0]["digest"] = "sha256:" + "be" * 31 + "ef"
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump(index, f)
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, [
        "index.json: manifests[0] names the manifest sha256:" + "be" * 31 + "ef",
        "which the image does not hold"])


def test_docker_manifest_names_a_missing_layer(dirs):
    d = dirs.copy("docker")
    path = os.path.join(d, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest[0]["Layers"][3] = "0" * 64 + ".tar"
    with open(path, "w") as f:
        json.dump(manifest, f)
    r = mount(path, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["0" * 64 + ".tar", "No such file"])


def test_truncated_layer_tar(dirs):
    d = dirs.copy("docker")
    layer = docker_layer(d, 0)
    os.truncate(layer, os.path.getsize(layer) // 2)
    hex_ = os.path.basename(layer)[:64]
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, [os.path.basename(layer), "layer 1 of"],
                         bad_layers=[hex_])


def test_truncated_oci_blob(dirs):
    d = dirs.copy("oci")
    blob = oci_layer_blob(d, 0)
    os.truncate(blob, os.path.getsize(blob) - 100)
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, [os.path.basename(blob), "layer 1 of"],
                         bad_layers=[os.path.basename(blob)])


@pytest.mark.parametrize("form", ["docker", "oci-plain"])
def test_flipped_byte_is_a_digest_mismatch(dirs, form):
    d = dirs.copy(form)
    layer = docker_layer(d, 0) if form == "docker" else oci_layer_blob(d, 0)
    hex_ = os.path.basename(layer)[:64]
    flip_byte_in_file_data(layer, "big/random.bin")
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, [os.path.basename(layer), "layer 1 of", "digest"],
                         bad_layers=[hex_])


def test_corrupt_gzip_layer(dirs):
    d = dirs.copy("oci")
    blob = oci_layer_blob(d, 1)
    with open(blob, "r+b") as f:
        f.seek(os.path.getsize(blob) // 2)
        f.write(b"\xff" * 16)
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, [os.path.basename(blob), "layer 2 of"],
                         bad_layers=[os.path.basename(blob)])


def test_unsupported_layer_media_type(dirs):
    d = dirs.copy("oci-plain")

    def edit(manifest):
        manifest["layers"][1]["mediaType"] = "application/vnd.example.layer.v1.squashfs"
    rewrite_oci_manifest(d, edit)
    r = mount(d, dirs)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache,
                         ["application/vnd.example.layer.v1.squashfs", "layer 2 of"])


def test_unknown_ref(dirs, image):
    r = mount(image.form("oci"), dirs, "--ref", "no-such-tag")
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["no-such-tag", "test"])


# --- bad mount points and caches ---------------------------------------------------------------

def test_mountpoint_does_not_exist(dirs, image):
    missing = os.path.join(dirs.mnt, "missing")
    r = run_layerfs("mount", image.form("oci"), missing, "--cache", dirs.cache)
    assert_fails_cleanly(r, missing, dirs.cache, [missing, "does not exist"])
    assert not os.path.exists(dirs.cache), "a mount that cannot start should not index"


def test_mountpoint_is_a_file(dirs, image, tmp_path):
    f = str(tmp_path / "a-file")
    open(f, "w").close()
    r = run_layerfs("mount", image.form("oci"), f, "--cache", dirs.cache)
    assert_fails_cleanly(r, f, dirs.cache, [f, "not a directory"])


def test_mountpoint_already_mounted(dirs, image, mounter):
    first = mounter.mount(image.form("oci"), mountpoint=dirs.mnt)
    r = run_layerfs("mount", image.form("oci-plain"), dirs.mnt, "--cache", dirs.cache)
    lines = r.stderr.splitlines()
    assert r.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), r.stderr
    assert dirs.mnt in lines[0] and "busy" in lines[0], lines[0]
    assert daemon_pids(dirs.mnt) == [first.pid]
    first.assert_healthy()
    with open(first.join("etc/hostname"), "rb") as f:
        assert f.read() == b"layerfs-test\n"


def test_cache_path_under_a_file(dirs, image, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("")
    cache = str(f / "cache")
    r = run_layerfs("mount", image.form("oci"), dirs.mnt, "--cache", cache)
    assert_fails_cleanly(r, dirs.mnt, None, ["cache", str(f), "not a directory"])


@pytest.fixture
def read_only_dir(tmp_path):
    path = str(tmp_path / "ro")
    os.mkdir(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", path],
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a read-only tmpfs (run as root): " + r.stderr, pytrace=False)
    yield path
    subprocess.run(["umount", path], check=True)


@pytest.mark.parametrize("sub", ["", "sub"], ids=["cache-is-read-only", "cache-parent-read-only"])
def test_cache_not_writable(dirs, image, read_only_dir, sub):
    cache = os.path.join(read_only_dir, sub) if sub else read_only_dir
    r = run_layerfs("mount", image.form("oci"), dirs.mnt, "--cache", cache)
    assert_fails_cleanly(r, dirs.mnt, None, ["cache", read_only_dir, "Read-only file system"])


def _in_private_dev(setup, argv, user=None):
    """Runs argv in a private mount namespace whose /dev is a fresh tmpfs prepared by the shell
    commands `setup`, as `user` (a uid) if given."""
    run = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] if user else []
    script = "mount -t tmpfs -o mode=0755 none /dev && %s && exec \"$@\"" % setup
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                           *run, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120)


@pytest.fixture
def world_readable(image):
    """The binary and the OCI form in a directory every user may read, and a mountpoint and a
    cache directory that belong to `nobody`."""
    top = tempfile.mkdtemp(prefix="layerfs-shared-")
    base = pathlib.Path(top)
    os.chmod(top, 0o755)
    shutil.copy(layerfs_binary(), base / "layerfs")
    layout = image.copy("oci", str(base / "oci"))
    for d in (base / "mnt", base / "cache"):
        d.mkdir()
        os.chown(d, 65534, 65534)
    subprocess.run(["chmod", "-R", "a+rX", top], check=True)
    yield str(base / "layerfs"), layout, str(base / "mnt"), str(base / "cache")
    shutil.rmtree(top)


def test_missing_dev_fuse_is_one_clear_error(dirs, image):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a private /dev")
    r = _in_private_dev("true", [layerfs_binary(), "mount", image.form("oci"), dirs.mnt,
                                 "--cache", dirs.cache])
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["/dev/fuse is missing"])
    assert not os.path.exists(dirs.cache), "a mount that cannot start should not index"


def test_dev_fuse_closed_to_the_user_is_one_clear_error(world_readable):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a private /dev")
    binary, layout, mnt, cache = world_readable
    r = _in_private_dev("mknod -m 0600 /dev/fuse c 10 229",
                        [binary, "mount", layout, mnt, "--cache", cache], user=65534)
    assert_fails_cleanly(r, mnt, cache, ["/dev/fuse (mode 0600)", "Permission denied",
                                         "this user may not use FUSE"])
    assert not os.listdir(cache), "a mount that cannot start should not index"


def test_fusermount3_without_setuid_is_one_clear_error(world_readable):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a private /dev")
    binary, layout, mnt, cache = world_readable
    plain = os.path.join(os.path.dirname(binary), "fusermount3")
    shutil.copy(shutil.which("fusermount3"), plain)  # the copy is not setuid
    os.chmod(plain, 0o755)
    r = _in_private_dev("mknod -m 0666 /dev/fuse c 10 229 && mount --bind %s %s" % (
        plain, shutil.which("fusermount3")), [binary, "mount", layout, mnt, "--cache", cache],
        user=65534)
    assert_fails_cleanly(r, mnt, cache, ["fusermount3 is not setuid root"])


# --- options -----------------------------------------------------------------------------------

def test_mount_help_lists_every_option():
    r = subprocess.run([layerfs_binary(), "mount", "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    for word in ("IMAGE", "MOUNTPOINT", "-h,--help", "--cache", "--ref", "--platform",
                 "--read-only", "-f,--foreground", "-d,--debug", "-o ", "timeout=", "--threads",
                 "--single-thread", "--owner", "uidmapping="):
        assert word in r.stdout, "%r missing from mount --help:\n%s" % (word, r.stdout)


def test_help_lists_subcommands():
    r = subprocess.run([layerfs_binary(), "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    for word in ("mount", "umount", "--verbose", "--quiet"):
        assert word in r.stdout, "%r missing from --help:\n%s" % (word, r.stdout)


def test_unknown_mount_option(dirs, image):
    r = mount(image.form("oci"), dirs, "-o", "no_such_option")
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["no_such_option"])


@pytest.mark.parametrize("option,words", [
    ("readahead=lots", ["readahead=lots", "KiB"]),
    ("timeout=soon", ["timeout=soon", "seconds"]),
])
def test_refused_mount_options(dirs, image, option, words):
    r = mount(image.form("oci"), dirs, "-o", option)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, words)


def test_read_only_mount_with_a_scratch_dir_is_refused(dirs, image, tmp_path):
    scratch = str(tmp_path / "scratch")
    r = mount(image.form("oci"), dirs, "--read-only", "--scratch", scratch)
    assert_fails_cleanly(r, dirs.mnt, dirs.cache, ["--scratch", "read-only"])
    assert not os.path.exists(scratch)


def test_missing_arguments():
    r = subprocess.run([layerfs_binary(), "mount"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert r.returncode != 0
    assert "IMAGE" in r.stderr or "required" in r.stderr.lower(), r.stderr


def test_umount_of_a_directory_not_mounted(dirs):
    r = run_layerfs("umount", dirs.mnt)
    lines = r.stderr.splitlines()
    assert r.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: ") and dirs.mnt in lines[0]
