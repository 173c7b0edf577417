"""Rootless use: mounting, writing and committing as an unprivileged user, and as root of a user
namespace (`unshare -Urm`, or `unshare -rm --map-auto` with the user's subordinate ids).

These tests run only as such a caller (marker `rootless`); tools/test runs them as a user it
creates, once directly and once in each kind of user namespace. As root of the initial namespace
they skip: that is every other test's job.

What a caller sees of an owner goes through two maps: layerfs's own (`--owner`, `-o uidmapping`),
then the kernel's, which shows an id the caller's user namespace does not map as 65534.
"""
import errno
import io
import json
import os
import stat
import subprocess
import tarfile

import pytest

import make_image
from conftest import is_mounted, layerfs_binary, run_layerfs, wait_for

OVERFLOW = 65534


def _id_map(kind):
    """[(inside, outside, count)] of this process's user namespace ("uid" or "gid")."""
    with open("/proc/self/%s_map" % kind) as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def host_root():
    return os.geteuid() == 0 and _id_map("uid") == [(0, 0, 4294967295)]


pytestmark = [
    pytest.mark.rootless,
    pytest.mark.skipif(host_root(), reason="runs as an unprivileged user or in a user "
                                           "namespace (tools/test runs it so)"),
]


def ns_shows(host_id, kind):
    """What the kernel shows this caller for `host_id` coming out of the mount."""
    for inside, _, count in _id_map(kind):
        if inside <= host_id < inside + count:
            return host_id
    return OVERFLOW


def shown(uid, gid):
    return ns_shows(uid, "uid"), ns_shows(gid, "gid")


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def may_override_modes():
    """Whether the caller has CAP_DAC_OVERRIDE in the mount (root of a user namespace), which
    the kernel grants only on inodes whose owner and group its namespace maps."""
    return os.geteuid() == 0


def write(path, data):
    with open(path, "w") as f:
        f.write(data)


def read(path):
    with open(path) as f:
        return f.read()


# Files the generated image holds, with their owners (tests/integration/make_image.py).
IMAGE_OWNERS = {
    "bin/tool": (0, 0),
    "bin/sgid-tool": (0, 50),
    "bin/dangling": (1000, 1000),
    "owners/u1000": (1000, 1000),
    "owners/nobody": (65534, 65534),
    "owners/big-ids": (123456789, 987654321),
    "modes/private": (1000, 1000),
    "dev/sda1": (0, 6),
}


@pytest.fixture(scope="module")
def plain_image(tmp_path_factory):
    """The generated image, made by this caller (no umoci reference: umoci needs root)."""
    return os.path.join(make_image.make_image(str(tmp_path_factory.mktemp("image"))), "oci")


def _owned_files(skip):
    """Every file and directory under / (and /dev/shm) this caller owns, outside `skip` and the
    directories that hold a path of `skip`, with its inode and change times."""
    me = os.getuid()
    held = set()
    for path in skip:
        while path != "/":
            path = os.path.dirname(path)
            held.add(path)
    owned = {}
    for top in ["/dev/shm", "/"]:
        for root, dirs, files in os.walk(top, onerror=lambda e: None):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
            for name in dirs + files:
                path = os.path.join(root, name)
                if path in held:
                    continue  # holds the tests' directories, so changes with them
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if st.st_uid == me:
                    owned[path] = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return owned


def _skipped(tmp_path_factory):
    return {"/proc", "/sys", "/dev", str(tmp_path_factory.getbasetemp())} | set(_fuse_mounts())


@pytest.fixture(scope="module", autouse=True)
def started(tmp_path_factory):
    """What this caller owned before this module's tests ran (whatever set the machine up, such
    as the creation of the test user and its home, wrote it): what the tests write must stay in
    their own directories."""
    return _owned_files(_skipped(tmp_path_factory))


def test_the_image_owners_show_as_the_image_gives_them(mounter, plain_image):
    m = mounter.mount(plain_image)
    for path, (uid, gid) in IMAGE_OWNERS.items():
        assert owner(m.join(path)) == shown(uid, gid), path
    assert mode(m.join("bin/tool")) == 0o4755
    assert stat.S_ISBLK(os.lstat(m.join("dev/sda1")).st_mode)
    assert os.lstat(m.join("dev/sda1")).st_rdev == os.makedev(8, 1)
    # default_permissions: the kernel checks what is shown.
    assert read(m.join("etc/hostname")) == "layerfs-test\n"
    private = m.join("modes/private/secret")
    if os.getuid() == 1000 or (may_override_modes() and shown(1000, 1000) == (1000, 1000)):
        assert read(private) == "secret\n"
    else:
        with pytest.raises(PermissionError):
            read(private)
    m.assert_healthy()


def test_owner_self_shows_every_file_as_the_callers(mounter, plain_image):
    m = mounter.mount(plain_image, options=("--owner=self",))
    me = (os.getuid(), os.getgid())
    for path in IMAGE_OWNERS:
        assert owner(m.join(path)) == me, path
    assert owner(m.path) == me
    assert read(m.join("modes/private/secret")) == "secret\n"  # 0600, "ours" now
    assert mode(m.join("bin/tool")) == 0o4755  # modes are kept
    m.assert_healthy()


def test_uidmapping_maps_image_ids_to_host_ids(mounter, plain_image):
    me_u, me_g = os.getuid(), os.getgid()
    other = 3000000  # a host id well away from the caller's
    m = mounter.mount(plain_image, writable=True, options=(
        "-o", "uidmapping=0:%d:1:1000:%d:10,gidmapping=0:%d:1" % (me_u, other, me_g)))
    assert owner(m.join("bin/tool")) == (me_u, me_g)
    assert owner(m.join("owners/u1000")) == shown(other, OVERFLOW)
    assert owner(m.join("owners/big-ids")) == shown(OVERFLOW, OVERFLOW)
    assert owner(m.join("bin/sgid-tool")) == (me_u, ns_shows(OVERFLOW, "gid"))
    # The caller stands for image root: it may write root's files, and what it makes is root's.
    write(m.join("etc/hostname"), "mapped\n")
    write(m.join("etc/new"), "new\n")
    assert read(m.join("etc/hostname")) == "mapped\n"
    assert owner(m.join("etc/new")) == (me_u, me_g)
    m.assert_healthy()


def test_bad_id_mappings_are_refused(tmp_path, plain_image):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for opts, message in [
            (("-o", "uidmapping=0:1000"), "expected groups of three numbers"),
            (("-o", "gidmapping=0:x:1"), "'x' is not an id"),
            (("-o", "uidmapping=0:1000:10:5:2000:1"), "overlap"),
            (("--owner=self", "-o", "uidmapping=0:1000:1"), "exclude each other")]:
        r = run_layerfs("mount", plain_image, str(mnt), "--cache", str(tmp_path / "c"), *opts)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("layerfs: error: ") and message in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
        assert not is_mounted(str(mnt))
    r = run_layerfs("mount", plain_image, str(mnt), "--owner=nobody")
    assert r.returncode == 2 and "--owner" in r.stderr


def _layers_of(layout):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    with open(os.path.join(layout, "blobs", *index["manifests"][0]["digest"].split(":"))) as f:
        manifest = json.load(f)
    return [os.path.join(layout, "blobs", *l["digest"].split(":")) for l in manifest["layers"]]


def test_write_chown_chmod_and_commit(mounter, plain_image, tmp_path):
    """With --owner=self the caller can change anything, as root in a container would; the owners
    and modes it sets are recorded and `layerfs commit` writes them into the new layer."""
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(plain_image, writable=True, options=("--owner=self", "--scratch", scratch))
    me = (os.getuid(), os.getgid())
    write(m.join("etc/hostname"), "rootless\n")              # copy-up of root's file
    os.mkdir(m.join("newdir"))
    write(m.join("newdir/tool"), "#!/bin/sh\n")
    os.chown(m.join("newdir/tool"), *me)                      # chown to the caller: root
    os.chmod(m.join("newdir/tool"), 0o4755)                   # chmod u+s (after: chown clears it)
    os.chmod(m.join("owners/u1000"), 0o600)                   # metadata only, keeps its owner
    os.mkfifo(m.join("newdir/fifo"))
    os.symlink("tool", m.join("newdir/link"))
    os.unlink(m.join("etc/shadowed"))                         # a whiteout
    with pytest.raises(OSError) as e:                         # an id nothing maps
        os.chown(m.join("newdir/tool"), 4242, -1)
    assert e.value.errno in (errno.EPERM, errno.EINVAL)
    os.chmod(m.join("newdir/tool"), 0o4755)  # in case the refused chown cleared it
    assert owner(m.join("newdir/tool")) == me and mode(m.join("newdir/tool")) == 0o4755
    assert mode(m.join("owners/u1000")) == 0o600
    assert not os.path.lexists(m.join("etc/shadowed"))
    m.assert_healthy()
    assert not mounter.unmount(m)

    # The scratch directory shows the changes again at the next mount.
    m = mounter.mount(plain_image, cache=m.cache, writable=True,
                      options=("--owner=self", "--scratch", scratch))
    assert read(m.join("etc/hostname")) == "rootless\n"
    assert mode(m.join("newdir/tool")) == 0o4755
    assert not os.path.lexists(m.join("etc/shadowed"))
    assert not mounter.unmount(m)

    out = str(tmp_path / "out")
    r = run_layerfs("commit", scratch, plain_image, out, "--cache", m.cache, "--compress", "none")
    assert r.returncode == 0, r.stderr
    with tarfile.open(_layers_of(out)[-1]) as t:
        entries = {ti.name.rstrip("/"): ti for ti in t.getmembers()}
        assert t.extractfile(entries["etc/hostname"]).read() == b"rootless\n"
    tool = entries["newdir/tool"]
    assert (tool.uid, tool.gid, tool.mode) == (0, 0, 0o4755)
    assert (entries["etc/hostname"].uid, entries["etc/hostname"].gid) == (0, 0)
    u1000 = entries["owners/u1000"]
    assert (u1000.uid, u1000.gid, u1000.mode) == (1000, 1000, 0o600)
    assert entries["newdir/fifo"].isfifo() and entries["newdir/fifo"].uid == 0
    assert entries["newdir/link"].issym() and entries["newdir/link"].linkname == "tool"
    assert "etc/.wh.shadowed" in entries
    assert (entries["newdir"].uid, entries["newdir"].gid) == (0, 0)

    # The committed image, mounted as the image gives owners.
    m = mounter.mount(out, cache=m.cache)
    assert owner(m.join("newdir/tool")) == shown(0, 0)
    assert mode(m.join("newdir/tool")) == 0o4755
    assert owner(m.join("owners/u1000")) == shown(1000, 1000)
    assert read(m.join("etc/hostname")) == "rootless\n"
    assert not os.path.lexists(m.join("etc/shadowed"))


def test_ownership_rules_without_owner_self(mounter, plain_image):
    """By default the kernel applies the image's owners: the caller writes where the modes let
    it, and chown follows the rules of its user namespace."""
    m = mounter.mount(plain_image, writable=True)
    me = (os.getuid(), os.getgid())
    write(m.join("tmp/mine"), "mine\n")                       # tmp/ is 1777
    assert owner(m.join("tmp/mine")) == me
    os.chmod(m.join("tmp/mine"), 0o640)
    assert mode(m.join("tmp/mine")) == 0o640
    if os.geteuid() != 0:
        with pytest.raises(PermissionError):
            write(m.join("etc/hostname"), "not mine\n")
        with pytest.raises(PermissionError):
            os.chown(m.join("tmp/mine"), 0, -1)
    else:  # root of a user namespace: image root is the caller
        write(m.join("etc/hostname"), "ns root\n")
        assert read(m.join("etc/hostname")) == "ns root\n"
        os.chown(m.join("tmp/mine"), 0, 0)
        assert owner(m.join("tmp/mine")) == (0, 0)
        if shown(33, 33) == (33, 33):  # subordinate ids mapped: chown like root in a container
            os.chown(m.join("tmp/mine"), 33, 33)
            assert owner(m.join("tmp/mine")) == (33, 33)
            os.chmod(m.join("tmp/mine"), 0o4750)
            assert mode(m.join("tmp/mine")) == 0o4750
    m.assert_healthy()


def test_default_cache_background_daemon_and_umount(plain_image, tmp_path):
    """No --cache, no -f: the index goes to $XDG_CACHE_HOME/layerfs, the ephemeral scratch under
    $TMPDIR, the daemon detaches, and `layerfs umount` ends it all."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), TMPDIR=str(tmp_path / "tmp"))
    os.makedirs(env["TMPDIR"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    binary = layerfs_binary()
    r = subprocess.run([binary, "mount", plain_image, str(mnt)], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        assert is_mounted(str(mnt))
        write(str(mnt / "tmp/x"), "x\n")
        assert read(str(mnt / "tmp/x")) == "x\n"
        assert os.listdir(env["TMPDIR"]), "no ephemeral scratch directory under $TMPDIR"
    finally:
        r = subprocess.run([binary, "umount", str(mnt)], env=env, text=True,
                           stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr
    assert not is_mounted(str(mnt))
    assert wait_for(lambda: not os.listdir(env["TMPDIR"]), 10.0), os.listdir(env["TMPDIR"])
    assert os.listdir(tmp_path / "xdg" / "layerfs"), "nothing cached in $XDG_CACHE_HOME/layerfs"


@pytest.mark.skipif(os.geteuid() == 0, reason="an ordinary user's limits")
def test_what_an_ordinary_user_cannot_do_is_one_clear_error(plain_image, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "mnt").mkdir()
    locked.chmod(0o555)
    (locked / "mnt").chmod(0o555)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = str(tmp_path / "cache")
    cases = [
        ((str(locked / "mnt"), "--cache", cache), "is not writable by you"),
        ((str(mnt), "--cache", str(locked / "cache")), "Permission denied"),
        ((str(mnt), "--cache", cache, "--scratch", str(locked / "scratch")), "Permission denied"),
        ((str(mnt), "--cache", cache, "-o", "owners=native"), "only root"),
    ]
    with open("/etc/fuse.conf") if os.path.exists("/etc/fuse.conf") else io.StringIO() as f:
        allows_other = any(l.strip() == "user_allow_other" for l in f)
    if not allows_other:
        cases.append(((str(mnt), "--cache", cache, "-o", "allow_other"), "user_allow_other"))
    try:
        for args, message in cases:
            r = run_layerfs("mount", plain_image, *args)
            assert r.returncode == 1, (args, r.stderr)
            assert r.stderr.startswith("layerfs: error: ") and message in r.stderr, r.stderr
            assert r.stderr.count("\n") == 1, r.stderr
            assert not is_mounted(args[0])
    finally:
        locked.chmod(0o755)


def _fuse_mounts():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if " - fuse" in line]


def test_nothing_written_outside_the_cache_scratch_and_mountpoint(started, tmp_path_factory):
    """Runs last: every file this caller owns that appeared or changed while these tests ran is
    in the tests' own directories (where their caches, scratch dirs and mountpoints are)."""
    now = _owned_files(_skipped(tmp_path_factory))
    found = sorted(path for path, stamp in now.items() if started.get(path) != stamp)
    assert not found, "written outside the tests' directories: %s" % found[:20]
