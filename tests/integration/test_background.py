"""Background mounts (no -f): ready when the command returns, kept alive, and ended cleanly by
SIGTERM or `layerfs umount`."""
import errno
import fcntl
import json
import os
import signal
import subprocess
import termios
import time

import pytest

from conftest import (Mount, daemon_pids, is_mounted, layerfs_binary, require_fuse,
                      run_layerfs, wait_for)


def background_mount(mounter, image_path, *options):
    """Runs `layerfs mount` without -f; returns (result, mountpoint, stat of a file right after
    the command returned, daemon pids)."""
    require_fuse()
    mnt, cache = mounter.new_dir("mnt"), mounter.new_dir("cache")
    r = subprocess.run([layerfs_binary(), "mount", image_path, mnt, "--cache", cache, *options],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    try:
        st = os.stat(os.path.join(mnt, "etc/hostname"))
    except OSError as e:
        st = e
    pids = daemon_pids(mnt)
    if pids:  # let the fixture unmount it whatever happens below
        mounter.mounts.append(Mount(mnt, cache, None, pid=pids[0]))
    return r, mnt, st, pids


@pytest.mark.parametrize("form", ["oci", "docker-archive", "oci-zstd"])
def test_mount_is_ready_when_the_command_returns(image, mounter, form):
    r, mnt, st, pids = background_mount(mounter, image.form(form))
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "a successful mount should print nothing: %r" % r.stderr
    assert not isinstance(st, OSError), "stat right after the mount returned: %s" % st
    assert st.st_size == len(b"layerfs-test\n")
    assert len(pids) == 1, "expected one daemon serving %s, found %s" % (mnt, pids)
    time.sleep(0.5)
    m = mounter.mounts[-1]
    assert m.alive(), "the daemon exited after the mount"
    with open(os.path.join(mnt, "etc/hostname"), "rb") as f:
        assert f.read() == b"layerfs-test\n"


def test_sigterm_unmounts_the_daemon(image, mounter):
    r, mnt, st, pids = background_mount(mounter, image.form("oci"))
    assert r.returncode == 0 and len(pids) == 1, r.stderr
    m = mounter.mounts[-1]
    os.kill(pids[0], signal.SIGTERM)
    assert wait_for(lambda: not m.alive(), 10), "the daemon ignored SIGTERM"
    assert not is_mounted(mnt), "SIGTERM left the mount behind"
    assert os.listdir(mnt) == []


def test_layerfs_umount_ends_the_daemon(image, mounter):
    r, mnt, st, pids = background_mount(mounter, image.form("oci"))
    assert r.returncode == 0 and len(pids) == 1, r.stderr
    m = mounter.mounts[-1]
    u = subprocess.run([layerfs_binary(), "umount", mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert u.returncode == 0, u.stderr
    assert not is_mounted(mnt)
    assert wait_for(lambda: not m.alive(), 10), "the daemon outlived its mount"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=lambda s: s.name)
def test_foreground_mount_ends_cleanly_on_signal(image, mounter, sig):
    m = mounter.mount(image.form("oci"))
    m.proc.send_signal(sig)
    assert m.proc.wait(timeout=10) == 0, m.log()
    assert not is_mounted(m.path)
    assert not [l for l in m.log().splitlines() if l.startswith("layerfs: error:")], m.log()


def test_foreground_mount_ends_when_unmounted(image, mounter):
    m = mounter.mount(image.form("oci-plain"))
    subprocess.run(["fusermount3", "-u", m.path], check=True)
    assert m.proc.wait(timeout=10) == 0, m.log()


def test_max_read_option_mounts(image, mounter):
    m = mounter.mount(image.form("oci"), options=("-o", "max_read=16384"))
    time.sleep(0.2)
    with open(m.join("big/random.bin"), "rb") as f:
        assert len(f.read()) == 300 * 1024
    m.assert_healthy()


def test_background_mount_exit_status_tells_the_truth(image, mounter):
    r, mnt, st, pids = background_mount(mounter, image.form("oci"), "-o", "max_read=16384")
    if r.returncode == 0:
        assert not isinstance(st, OSError), "exit 0, but stat right after it: %s" % st
        time.sleep(0.5)
        assert is_mounted(mnt), "exit 0, but nothing stays mounted"
    else:
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), r.stderr
        assert not is_mounted(mnt)


def test_stats_option_writes_the_requests_served_at_unmount(image, mounter, tmp_path):
    stats = str(tmp_path / "stats.json")
    m = mounter.mount(image.form("oci"), options=["-o", "stats=" + stats])
    names = os.listdir(m.join("etc"))
    fd = os.open(m.join("etc/hostname"), os.O_RDONLY)  # os.open: no isatty() of its own
    try:
        assert os.read(fd, 100)
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, termios.TCGETS, bytes(64))  # what isatty() asks
        assert e.value.errno == errno.ENOTTY
    finally:
        os.close(fd)
    os.statvfs(m.path)
    os.statvfs(m.path)
    assert not os.path.exists(stats)  # written when the mount ends
    assert not mounter.unmount(m)
    with open(stats) as f:
        out = json.load(f)
    requests = out["requests"]
    assert requests["STATFS"]["count"] >= 2
    assert requests["IOCTL"]["count"] == 1
    assert requests["READ"]["count"] >= 1 and requests["READDIRPLUS"]["count"] >= 1
    assert "hostname" in names and requests["LOOKUP"]["count"] >= 1
    assert out["total"]["count"] == sum(r["count"] for r in requests.values())
    assert all(r["ns"] > 0 for r in requests.values())


def test_stats_option_needs_a_writable_directory(image, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run_layerfs("mount", image.form("oci"), str(mnt), "-o", "stats=/nonexistent/s.json")
    assert r.returncode == 1 and r.stderr.startswith(
        "layerfs: error: -o stats=/nonexistent/s.json: cannot write in /nonexistent/"), r.stderr
