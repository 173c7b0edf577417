"""Writable mounts end to end: changes made with ordinary tools, `layerfs commit`, and the
committed image mounted again (and, for the real image, unpacked by umoci and copied by skopeo)
showing exactly the tree the writable mount showed."""
import io
import json
import os
import re
import subprocess
import tarfile

import pytest

from conftest import assert_same_tree, run_layerfs
from tree_compare import compare_trees, summary


def sh(cmd, cwd=None):
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, "%s failed:\n%s" % (cmd, r.stdout)
    return r.stdout


def package_tar(path):
    """A small 'package' as a tar, the way apt unpacks one: directories, files, a symlink and a
    hard link, with owners and modes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link=""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, 1650000000
            ti.linkname = link
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("./usr/", tarfile.DIRTYPE, mode=0o755)
        add("./usr/share/", tarfile.DIRTYPE, mode=0o755)
        add("./usr/share/pkg/", tarfile.DIRTYPE, mode=0o755)
        add("./usr/share/pkg/README", data=b"a package\n")
        add("./usr/share/pkg/data.bin", data=os.urandom(300000))
        add("./usr/share/pkg/run", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0)
        add("./usr/share/pkg/link", tarfile.SYMTYPE, link="README")
        add("./usr/share/pkg/hard", tarfile.LNKTYPE, link="./usr/share/pkg/README")
        add("./etc/", tarfile.DIRTYPE, mode=0o755)
        add("./etc/pkg.conf", data=b"setting=1\n", mode=0o640, uid=0, gid=42)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def change_generated(root, tmp):
    pkg = os.path.join(tmp, "pkg.tar")
    package_tar(pkg)
    sh("tar -xpf %s -C %s" % (pkg, root))
    sh("sed -i 's/version/VERSION/' etc/shadowed", cwd=root)
    sh("rm -rf many etc/hostname", cwd=root)
    sh("mv deep deep-moved", cwd=root)
    sh("ln etc/twice twice-hard && ln -s ../etc/shadowed app/sl", cwd=root)
    sh("chmod 4711 app/hello.txt && chown 123:456 bin/tool && touch -h -d @1600000000 modes",
       cwd=root)
    sh("setfattr -n user.k -v value etc/shadowed", cwd=root)
    sh("mkfifo tmp/fifo && mknod dev/newnull c 1 3", cwd=root)
    sh("rm -rf opt && mkdir opt && echo new > opt/only", cwd=root)
    sh("echo appended >> big/random.bin", cwd=root)


COMMITS = [
    ("oci-gzip", ()),
    ("oci-zstd", ("--compress", "zstd")),
    ("oci-none", ("--compress", "none")),
    ("docker", ("--format", "docker")),
]


def commit(scratch, image, cache, out, *extra):
    r = run_layerfs("-v", "commit", scratch, image, out, "--cache", cache, *extra, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def scratch_changed_by(mounter, src, tmp_path, cmd):
    """Mounts `src` writable on a new scratch directory, runs the shell command `cmd` in it and
    unmounts; returns the scratch directory and the mount's cache."""
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(src, options=("--scratch", scratch), writable=True)
    sh(cmd, cwd=m.path)
    assert not mounter.unmount(m)
    return scratch, m.cache


def test_commit_round_trip(image, mounter, tmp_path):
    src = image.form("oci")
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(src, options=("--scratch", scratch), writable=True)
    change_generated(m.path, str(tmp_path))
    m.assert_healthy()
    # commit refuses while a mount uses the scratch directory
    r = run_layerfs("commit", scratch, src, str(tmp_path / "busy"), "--cache", m.cache)
    assert r.returncode == 1 and "in use" in r.stderr, r.stderr
    assert not os.path.exists(str(tmp_path / "busy"))
    assert not mounter.unmount(m)
    outs = [(name, commit(scratch, src, m.cache, str(tmp_path / name), *extra))
            for name, extra in COMMITS]
    # What the writable mount shows, against what each committed image shows.
    w = mounter.mount(src, cache=m.cache, options=("--scratch", scratch), writable=True)
    with open(w.join("etc/shadowed"), "rb") as f:
        assert b"VERSION" in f.read()
    assert not os.path.exists(w.join("many"))
    assert os.path.isdir(w.join("deep-moved/implied/parents"))
    for name, out in outs:
        c = mounter.mount(out)
        diffs = compare_trees(c.path, w.path)
        assert not diffs, name + ":\n" + summary(diffs)
        assert not mounter.unmount(c)
    leftovers = [n for n in os.listdir(str(tmp_path)) if ".tmp-" in n or ".layer-" in n]
    assert not leftovers


def test_committed_layer_holds_the_oci_whiteouts(image, mounter, tmp_path):
    src = image.form("docker-dir")
    scratch, cache = scratch_changed_by(mounter, src, tmp_path, "rm etc/shadowed && rm -rf opt && mkdir opt && touch opt/x")
    out = commit(scratch, src, cache, str(tmp_path / "out"), "--compress", "none")
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    with open(os.path.join(out, "blobs", *index["manifests"][0]["digest"].split(":"))) as f:
        manifest = json.load(f)
    top = manifest["layers"][-1]
    assert top["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    with tarfile.open(os.path.join(out, "blobs", *top["digest"].split(":"))) as t:
        names = t.getnames()
    assert "etc/.wh.shadowed" in names
    assert "opt/.wh..wh..opq" in names and "opt/x" in names
    assert not [n for n in names if "layerfs" in n]
    with open(os.path.join(out, "blobs", *manifest["config"]["digest"].split(":"))) as f:
        config = json.load(f)
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
    assert config["history"][-1]["created_by"] == "layerfs commit"


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_commit_removes_what_a_killed_commit_left_and_nothing_else(image, mounter, tmp_path):
    import fcntl
    src = image.form("oci")
    scratch, cache = scratch_changed_by(mounter, src, tmp_path, "echo changed > etc/shadowed")
    out = str(tmp_path / "out")
    dead = dead_pid()
    stale = ["out.tmp-%d" % dead, "out.layer-%d" % dead]
    os.makedirs(str(tmp_path / stale[0] / "blobs" / "sha256"))
    with open(str(tmp_path / stale[0] / "blobs" / "sha256" / "partial"), "wb") as f:
        f.write(b"x" * 4096)
    with open(str(tmp_path / stale[1]), "wb") as f:
        f.write(b"half a layer")
    # Kept: a commit that still runs (its pid is alive), one whose lock is held (a commit in
    # another pid namespace), one of another image, and names that only look alike.
    sleeper = subprocess.Popen(["sleep", "60"])
    dead_but_locked = "out.tmp-%d" % dead_pid()
    kept = ["out.tmp-%d" % sleeper.pid, "out.layer-%d" % sleeper.pid, dead_but_locked,
            "other.tmp-%d" % dead, "out.tmp-%d.bak" % dead, "out.tmp-", "out.layer-x1"]
    for name in kept:
        if ".tmp-" in name:
            os.makedirs(str(tmp_path / name))
        else:
            open(str(tmp_path / name), "wb").close()
    lock = os.open(str(tmp_path / dead_but_locked), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = run_layerfs("-v", "commit", scratch, src, out, "--cache", cache, timeout=600)
        assert r.returncode == 0, r.stderr
    finally:
        os.close(lock)
        sleeper.kill()
        sleeper.wait()
    names = set(os.listdir(str(tmp_path)))
    assert not names & set(stale), names
    assert set(kept) <= names, names
    for name in stale:
        assert name in r.stderr and "did not finish" in r.stderr, r.stderr
    c = mounter.mount(out)
    with open(c.join("etc/shadowed")) as f:
        assert f.read() == "changed\n"
    assert not mounter.unmount(c)


@pytest.mark.parametrize("case", ["not-a-scratch", "out-exists", "docker-gzip", "bad-format",
                                  "other-image"])
def test_commit_refuses_bad_input(image, mounter, tmp_path, case):
    src = image.form("oci")
    scratch, cache = scratch_changed_by(mounter, src, tmp_path, "echo x > new")
    out = str(tmp_path / "out")
    args = [scratch, src, out, "--cache", cache]
    if case == "not-a-scratch":
        os.makedirs(str(tmp_path / "plain"))
        args[0] = str(tmp_path / "plain")
        words = ["not a layerfs scratch directory"]
    elif case == "out-exists":
        os.makedirs(out)
        words = ["already exists"]
    elif case == "docker-gzip":
        args += ["--format", "docker", "--compress", "gzip"]
        words = ["uncompressed"]
    elif case == "bad-format":
        args += ["--format", "zip"]
        words = ["--format"]
    else:
        other = str(tmp_path / "other")
        os.makedirs(other)
        with tarfile.open(os.path.join(other, "layer.tar"), "w") as t:
            ti = tarfile.TarInfo("f")
            t.addfile(ti, io.BytesIO(b""))
        sh("cd %s && sha=$(sha256sum layer.tar | cut -d' ' -f1) && mv layer.tar $sha.tar && "
           "printf '{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:%%s\"]}}' $sha "
           "> config.json && printf '[{\"Config\":\"config.json\",\"Layers\":[\"%%s.tar\"]}]'"
           " $sha > manifest.json" % other)
        args[1] = other
        words = ["another image"]
    r = run_layerfs("commit", *args)
    lines = r.stderr.splitlines()
    assert r.returncode in (1, 2), r.stderr
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    if case != "out-exists":
        assert not os.path.exists(out)
    leftovers = [n for n in os.listdir(str(tmp_path)) if ".tmp-" in n or ".layer-" in n]
    assert not leftovers


def test_writable_mount_with_a_fresh_scratch_matches_reference(image, mounter):
    for form in ("oci", "docker-dir", "docker-archive"):
        m = mounter.mount(image.form(form), writable=True)
        assert_same_tree(m.path, image.rootfs, image.implied)
        m.assert_healthy()
        assert not mounter.unmount(m)


def test_ephemeral_scratch_goes_at_unmount(image, mounter):
    m = mounter.mount(image.form("oci"), writable=True)
    sh("echo data > new-file", cwd=m.path)
    found = re.search(r"scratch directory (\S+)", m.log())
    assert found, m.log()
    scratch = found.group(1)
    assert os.path.isfile(os.path.join(scratch, "upper", "new-file"))
    assert not mounter.unmount(m)
    assert not os.path.exists(scratch)


# --- the real image ----------------------------------------------------------------------------

def change_corpus(root, tmp):
    pkg = os.path.join(tmp, "pkg.tar")
    package_tar(pkg)
    sh("tar -xpf %s -C %s" % (pkg, root))
    sh("sed -i 's/Debian/Layered Debian/' etc/os-release", cwd=root)
    sh("rm -rf usr/share/doc usr/share/man", cwd=root)
    sh("mv usr/share/zoneinfo usr/share/zoneinfo-moved", cwd=root)
    sh("ln usr/bin/python3.11 usr/local/bin/py-hard && ln -s /usr/bin/env usr/local/bin/env-link",
       cwd=root)
    sh("chmod 700 root && chown 1000:1000 etc/hostname && setfattr -n user.test -v 1 etc/hosts",
       cwd=root)
    sh("echo 'tmpfs /tmp tmpfs defaults 0 0' >> etc/fstab", cwd=root)


@pytest.mark.corpus
def test_corpus_commit_round_trip(corpus, mounter, tmp_path):
    src = os.path.join(corpus, "oci")
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(src, options=("--scratch", scratch), writable=True)
    change_corpus(m.path, str(tmp_path))
    r = subprocess.run(["chroot", m.path, "python3", "-c", "import json; print(json.dumps(1))"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stdout
    assert not mounter.unmount(m)
    out = commit(scratch, src, m.cache, str(tmp_path / "committed"))
    w = mounter.mount(src, cache=m.cache, options=("--scratch", scratch), writable=True)
    c = mounter.mount(out)
    diffs = compare_trees(c.path, w.path)
    assert not diffs, summary(diffs)
    # umoci applies the committed image to the same tree.
    rootfs = umoci_unpack_ref(out, "latest", str(tmp_path / "bundle"))
    diffs = compare_trees(rootfs, w.path)
    assert not diffs, summary(diffs)
    # skopeo reads it as an image.
    r = subprocess.run(["skopeo", "copy", "oci:%s:latest" % out, "dir:%s" % (tmp_path / "copy")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout


def umoci_unpack_ref(layout, ref, bundle):
    r = subprocess.run(["umoci", "unpack", "--image", "%s:%s" % (layout, ref), bundle],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stdout
    return os.path.join(bundle, "rootfs")
