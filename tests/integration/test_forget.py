"""The kernel's lookup/forget accounting: walking, dropping the dentry and inode caches (which
sends FORGETs for every inode), and walking again must leave the daemon healthy and correct."""
import os
import threading

import pytest

from conftest import assert_same_tree


def drop_caches():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def walk(root):
    """Looks up, stats and lists every path; reads every regular file's first bytes."""
    seen = 0
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            seen += 1
            if name in files and os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    f.read(64)
            del st
    return seen


@pytest.fixture
def can_drop_caches():
    if not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        pytest.fail("/proc/sys/vm/drop_caches is not writable: run the tests as root",
                    pytrace=False)


@pytest.mark.parametrize("options", [(), ("-o", "timeout=0")], ids=["cached", "timeout=0"])
def test_walks_and_drop_caches_keep_daemon_healthy(image, mounter, can_drop_caches, options):
    m = mounter.mount(image.form("oci"), options=options)
    counts = set()
    for _ in range(3):
        counts.add(walk(m.path))
        drop_caches()
    for _ in range(2):
        counts.add(walk(m.path))
    assert len(counts) == 1, "walks saw different numbers of paths: %s" % counts
    drop_caches()
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()


def test_concurrent_walks_while_dropping_caches(image, mounter, can_drop_caches):
    m = mounter.mount(image.form("oci-plain"), options=("-o", "timeout=0"))
    expected = walk(m.path)
    errors = []

    def walker():
        try:
            for _ in range(6):
                n = walk(m.path)
                if n != expected:
                    errors.append("walk saw %d paths, expected %d" % (n, expected))
        except OSError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=walker) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        drop_caches()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    drop_caches()
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()
