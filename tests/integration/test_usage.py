"""What a new user runs into first: `layerfs umount` and `--scratch` touch nothing that is not
theirs, usage errors are one line, --version, and the messages of a wrong platform, a missing
blob, a non-empty mount point and a commit."""
import json
import os
import re
import subprocess
import tarfile

import pytest

from conftest import is_mounted, layerfs_binary, run_layerfs, wait_for

def one_error_line(r, status=1):
    lines = r.stderr.splitlines()
    assert r.returncode == status, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), r.stderr
    return lines[0]


def listing(path):
    """Every name below `path` with its size, mode and mtime: what a refusal must leave as is."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mode, st.st_mtime_ns)
    st = os.lstat(path)
    out["."] = (st.st_mode, st.st_mtime_ns)
    return out


# --- umount ------------------------------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs (root)")
    path = str(tmp_path / "tmpfs")
    os.mkdir(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "precious", path], check=True)
    with open(os.path.join(path, "data"), "w") as f:
        f.write("keep me\n")
    yield path
    if is_mounted(path):
        subprocess.run(["umount", path], check=True)


@pytest.mark.parametrize("lazy", [False, True])
def test_umount_refuses_a_mount_that_is_not_layerfs(tmpfs, lazy):
    r = run_layerfs("umount", tmpfs, *(["-z"] if lazy else []))
    line = one_error_line(r)
    assert "%s: not a layerfs mount (a tmpfs mount of precious)" % tmpfs in line, line
    assert is_mounted(tmpfs)
    with open(os.path.join(tmpfs, "data")) as f:
        assert f.read() == "keep me\n"


def test_umount_of_a_directory_not_mounted_says_so(tmp_path):
    r = run_layerfs("umount", str(tmp_path))
    assert one_error_line(r) == "layerfs: error: %s: not mounted (not a mount point)" % tmp_path


def test_umount_of_a_busy_mount_says_who_and_points_to_lazy(image, mounter):
    m = mounter.mount(image.form("oci"))
    user = subprocess.Popen(["sleep", "60"], cwd=m.path)
    try:
        r = run_layerfs("umount", m.path)
        line = one_error_line(r)
        assert "%s: busy: a process is using the mount" % m.path in line, line
        assert "fuser -vm" in line and "layerfs umount -z %s" % m.path in line, line
        assert is_mounted(m.path)
    finally:
        user.kill()
        user.wait()
    r = run_layerfs("umount", m.path + "/")  # a trailing slash names the same mount
    assert r.returncode == 0, r.stderr
    assert not is_mounted(m.path)


def test_umount_of_a_relative_path(image, mounter):
    m = mounter.mount(image.form("oci"))
    r = subprocess.run([layerfs_binary(), "umount", os.path.basename(m.path)],
                       cwd=os.path.dirname(m.path), stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    assert not is_mounted(m.path)


# --- --scratch ---------------------------------------------------------------------------------

def test_a_refused_scratch_directory_is_left_as_it_was(image, tmp_path):
    mine = tmp_path / "myproject"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    before = listing(str(mine))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run_layerfs("mount", image.form("oci"), str(mnt), "--cache", str(tmp_path / "cache"),
                    "--scratch", str(mine))
    line = one_error_line(r)
    assert "not a layerfs scratch directory and not empty (it holds 'notes.txt')" in line, line
    assert listing(str(mine)) == before
    assert not is_mounted(str(mnt))


def test_a_scratch_directory_of_another_image_is_left_as_it_was(image, mounter, tmp_path):
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(image.form("oci"), writable=True, options=["--scratch", scratch])
    assert not mounter.unmount(m)
    os.unlink(os.path.join(scratch, "lock"))
    with open(os.path.join(scratch, "layerfs-scratch.json")) as f:
        desc = json.load(f)
    desc["layers"] = desc["layers"][:-1]
    with open(os.path.join(scratch, "layerfs-scratch.json"), "w") as f:
        json.dump(desc, f)
    before = listing(scratch)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run_layerfs("mount", image.form("oci"), str(mnt), "--cache", m.cache, "--scratch", scratch)
    assert "holds changes to another image" in one_error_line(r)
    assert listing(scratch) == before  # no lock file made


# --- the command line --------------------------------------------------------------------------

def test_version_names_layerfs_and_its_libraries():
    r = run_layerfs("--version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"layerfs \d+\.\d+\.\d+", lines[0]), r.stdout
    assert re.search(r"^libfuse 3\.\d+", r.stdout, re.M), r.stdout
    assert re.search(r"^libarchive 3\.\d+", r.stdout, re.M), r.stdout
    assert re.search(r"zlib \d+\.\d+", r.stdout) and re.search(r"zstd \d+\.\d+", r.stdout), r.stdout
    assert re.search(r"^gzip layers read in place are inflated with (ISA-L|zlib)", r.stdout,
                     re.M), r.stdout


@pytest.mark.parametrize("argv,message", [
    ([], "layerfs: error: layerfs: which command? usage: layerfs "
         "mount|umount|commit|inspect|which|ls|diff|bench|index ARGS... [--help] "
         "(see layerfs --help)"),
    (["frobnicate"], "layerfs: error: layerfs: unknown command 'frobnicate'; usage: layerfs "
                     "mount|umount|commit|inspect|which|ls|diff|bench|index ARGS... [--help] "
                     "(see layerfs --help)"),
    (["index"], "layerfs: error: layerfs index: A subcommand is required "
                "(see layerfs index --help)"),
    (["mount"], "layerfs: error: layerfs mount: IMAGE is required (see layerfs mount --help)"),
    (["mount", "x"], "layerfs: error: layerfs mount: MOUNTPOINT is required "
                     "(see layerfs mount --help)"),
    (["umount", "--no-such-flag", "x"], "layerfs: error: layerfs umount: The following argument "
                                        "was not expected: --no-such-flag "
                                        "(see layerfs umount --help)"),
    (["bench", "x", "--passes", "0"], "layerfs: error: layerfs bench: --passes: Value 0 not in "
                                      "range 1 to 100 (see layerfs bench --help)"),
])
def test_a_usage_error_is_one_line_with_status_2(argv, message):
    r = run_layerfs(*argv)
    assert one_error_line(r, status=2) == message
    assert r.stdout == ""


def test_help_command_is_help():
    top = run_layerfs("help")
    assert top.returncode == 0 and top.stdout == run_layerfs("--help").stdout, top.stderr
    assert "usage: layerfs mount|umount|commit" in top.stdout
    sub = run_layerfs("help", "mount")
    assert sub.returncode == 0 and sub.stdout == run_layerfs("mount", "--help").stdout
    assert "MOUNTPOINT" in sub.stdout


# --- messages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["oci", "docker-dir", "docker-archive"])
def test_a_platform_the_image_does_not_offer_is_an_error(image, tmp_path, form):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run_layerfs("mount", image.form(form), str(mnt), "--cache", str(tmp_path / "cache"),
                    "--platform", "linux/arm64")
    line = one_error_line(r)
    assert "no image for platform linux/arm64 (--platform); the image is for linux/amd64 only" \
        in line, line
    assert not is_mounted(str(mnt))
    r = run_layerfs("ls", image.form(form), "/", "--platform", "linux/amd64", "--cache",
                    str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr


def test_a_bad_layer_is_named_as_inspect_lists_it(image, tmp_path):
    layout = image.copy("oci", str(tmp_path / "oci"))
    cache = str(tmp_path / "cache")
    inspected = json.loads(run_layerfs("inspect", layout, "--json", "--cache", cache).stdout)
    digest = inspected["layers"][1]["digest"]
    assert digest != inspected["layers"][1]["diff_id"]  # gzip: the two differ
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "r+b") as f:
        f.seek(30)
        byte = f.read(1)
        f.seek(30)
        f.write(bytes([byte[0] ^ 0x55]))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run_layerfs("mount", layout, str(mnt), "--cache", str(tmp_path / "cache2"))
    line = one_error_line(r)
    assert "layer 2 of %d (%s)" % (len(inspected["layers"]), digest[:19]) in line, line


def test_mount_counts_paths_as_inspect_does(image, mounter):
    m = mounter.mount(image.form("oci"))
    inspected = json.loads(run_layerfs("inspect", image.form("oci"), "--json", "--cache",
                                       m.cache).stdout)
    found = re.search(r"(\d+) paths, ready in", m.log())
    assert found, m.log()
    assert int(found.group(1)) == inspected["total"]["visible_paths"]
    walked = sum(len(dirs) + len(files) for _, dirs, files in os.walk(m.path))
    assert int(found.group(1)) == walked


def test_a_non_empty_mountpoint_is_a_warning(image, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "hidden.txt").write_text("under the mount\n")
    (mnt / "also").mkdir()
    r = run_layerfs("mount", image.form("oci"), str(mnt), "--cache", str(tmp_path / "cache"),
                    "--read-only")
    try:
        assert r.returncode == 0, r.stderr
        assert r.stderr.splitlines() == [
            "layerfs: warning: mountpoint %s is not empty: what it holds ('also' and 1 more) is "
            "hidden while the image is mounted on it" % mnt], r.stderr
        assert is_mounted(str(mnt))
    finally:
        run_layerfs("umount", str(mnt))
    assert wait_for(lambda: not is_mounted(str(mnt)), 5)
    assert (mnt / "hidden.txt").read_text() == "under the mount\n"


def test_commit_says_what_it_wrote(image, mounter, tmp_path):
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(image.form("oci"), writable=True, options=["--scratch", scratch])
    with open(m.join("etc/new-file"), "w") as f:
        f.write("new\n")
    os.unlink(m.join("etc/hostname"))
    assert not mounter.unmount(m)
    out = str(tmp_path / "out")
    r = run_layerfs("commit", scratch, image.form("oci"), out, "--cache", m.cache)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    with open(os.path.join(out, "index.json")) as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"].split(":")[1]
    with open(os.path.join(out, "blobs", "sha256", manifest_digest)) as f:
        layer = json.load(f)["layers"][-1]
    n = len(json.loads(run_layerfs("inspect", image.form("oci"), "--json", "--cache",
                                   m.cache).stdout)["layers"])
    blob = os.path.join(out, "blobs", "sha256", layer["digest"].split(":")[1])
    with tarfile.open(blob) as t:
        members = t.getmembers()
    whiteouts = [x for x in members if os.path.basename(x.name).startswith(".wh.")]
    assert r.stdout == (
        "%s: OCI image, the %d layers of %s + layer %d %s (%d bytes, gzip): %d entries, %d of "
        "them whiteouts, in " % (out, n, image.form("oci"), n + 1, layer["digest"],
                                 os.path.getsize(blob), len(members), len(whiteouts))
    ) + r.stdout.split(" whiteouts, in ")[1], r.stdout
    assert r.stdout.endswith(" ms\n") and len(whiteouts) == 1
    quiet = run_layerfs("-q", "commit", scratch, image.form("oci"), out + "2", "--cache", m.cache)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_mounts_are_nosuid_nodev_unless_asked(image, mounter):
    def options(m):
        with open("/proc/self/mountinfo") as f:
            line = next(l for l in f if l.split()[4] == m.path)
        return set(line.split()[5].split(","))
    m = mounter.mount(image.form("oci"))
    assert {"nosuid", "nodev"} <= options(m)
    if os.geteuid() == 0:
        m = mounter.mount(image.form("oci"), options=["-o", "suid,dev"])
        assert not {"nosuid", "nodev"} & options(m)
