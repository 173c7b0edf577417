"""A FUSE connection handed over: `layerfs mount IMAGE /dev/fd/N` serves a /dev/fuse descriptor
that the caller opened and mounted itself (as mount.fuse3 and container runtimes do), and leaves
the unmounting to that caller."""
import ctypes
import os
import subprocess

import pytest

from conftest import assert_same_tree, is_mounted, layerfs_binary, require_fuse, run_layerfs, \
    wait_for

MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def handed(tmp_path):
    """Mounts a FUSE connection on a new directory as its caller would: returns a function that
    takes the mount flags and gives (mountpoint, descriptor). Everything is unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounts with mount(2) (root)")
    require_fuse()
    made = []

    def mount(read_only):
        mnt = str(tmp_path / ("mnt-%d" % len(made)))
        os.mkdir(mnt)
        fd = os.open("/dev/fuse", os.O_RDWR)
        data = "fd=%d,rootmode=40000,user_id=0,group_id=0,default_permissions" % fd
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if read_only else 0)
        if libc.mount(b"handed", mnt.encode(), b"fuse.layerfs", flags, data.encode()) != 0:
            err = ctypes.get_errno()
            os.close(fd)
            pytest.fail("mount(2) of a FUSE connection: %s" % os.strerror(err))
        made.append(mnt)
        return mnt, fd

    yield mount
    for mnt in made:
        if is_mounted(mnt):
            libc.umount2(mnt.encode(), 2)  # MNT_DETACH


def serve(fd, image, cache, *args):
    """Starts layerfs on the descriptor `fd`, which this process then closes: the daemon holds the
    connection alone."""
    proc = subprocess.Popen([layerfs_binary(), "mount", image, "/dev/fd/%d" % fd, "--cache", cache,
                             *args], pass_fds=(fd,), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    os.close(fd)
    return proc


def stop(mnt, proc):
    """Unmounts as the caller that made the mount, and returns the daemon's output once it has
    exited (it must, with status 0)."""
    assert libc.umount2(mnt.encode(), 0) == 0, os.strerror(ctypes.get_errno())
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_a_handed_connection_serves_the_image(handed, image, tmp_path):
    mnt, fd = handed(read_only=True)
    proc = serve(fd, image.form("oci"), str(tmp_path / "cache"), "--read-only")
    # The first request waits for the daemon's INIT reply: the tree is whole when it comes.
    assert_same_tree(mnt, image.rootfs, image.implied)
    with pytest.raises(OSError):
        open(os.path.join(mnt, "new-file"), "w")
    assert proc.poll() is None
    out = stop(mnt, proc)
    assert "error" not in out
    assert not is_mounted(mnt)


def test_a_handed_writable_connection_keeps_its_changes_in_the_scratch_dir(handed, image,
                                                                          tmp_path):
    scratch = str(tmp_path / "scratch")
    cache = str(tmp_path / "cache")
    mnt, fd = handed(read_only=False)
    proc = serve(fd, image.form("docker-dir"), cache, "--scratch", scratch)
    with open(os.path.join(mnt, "written-through-fd"), "w") as f:
        f.write("kept\n")
    stop(mnt, proc)
    # The same scratch dir, mounted the ordinary way, has the change.
    again = str(tmp_path / "again")
    os.mkdir(again)
    r = run_layerfs("mount", image.form("docker-dir"), again, "--cache", cache,
                    "--scratch", scratch)
    assert r.returncode == 0, r.stderr
    try:
        with open(os.path.join(again, "written-through-fd")) as f:
            assert f.read() == "kept\n"
    finally:
        assert run_layerfs("umount", again).returncode == 0
    assert wait_for(lambda: not is_mounted(again), 10)


def test_a_descriptor_that_is_not_open_is_one_clear_error(image, tmp_path):
    r = run_layerfs("mount", image.form("oci"), "/dev/fd/987", "--cache", str(tmp_path / "c"),
                    "--read-only")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("layerfs: error: /dev/fd/987: no such open descriptor"), r.stderr
