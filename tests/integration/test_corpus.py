"""The real multi-layer Debian image ($LAYERFS_CORPUS, built by tests/corpus/build-image.sh):
every form mounts as umoci's rootfs/, and the checks a user would make on it hold."""
import os
import shutil
import stat
import subprocess

import pytest

from conftest import Mounter, assert_same_tree

pytestmark = pytest.mark.corpus

FORMS = ["docker/manifest.json", "docker.tar", "oci", "oci-plain", "oci-zstd"]


@pytest.mark.parametrize("form", FORMS)
def test_form_matches_reference(corpus, mounter, form):
    m = mounter.mount(os.path.join(corpus, form))
    assert_same_tree(m.path, os.path.join(corpus, "rootfs"))
    m.assert_healthy()


@pytest.fixture(scope="module")
def mnt(corpus, tmp_path_factory):
    """One mount shared by the read-only spot checks below (a cold mount costs seconds)."""
    mounter = Mounter(tmp_path_factory.mktemp("corpus-mount"))
    try:
        yield mounter.mount(os.path.join(corpus, "oci"))
    finally:
        problems = mounter.cleanup()
    assert not problems, problems


def test_python_has_its_capability(mnt):
    cap = os.getxattr(mnt.join("usr/bin/python3.11"), "security.capability")
    assert len(cap) == 20 and cap[3] == 0x02, cap  # VFS_CAP_REVISION_2
    assert "security.capability" in os.listxattr(mnt.join("usr/bin/python3.11"))


def test_hard_linked_app_files(mnt):
    a, b = os.lstat(mnt.join("app/hello.txt")), os.lstat(mnt.join("app/hello-link.txt"))
    assert a.st_ino == b.st_ino
    assert a.st_nlink == b.st_nlink == 2


def test_replaced_and_removed_paths(mnt):
    assert stat.S_ISDIR(os.lstat(mnt.join("etc/issue.net")).st_mode)
    assert os.listdir(mnt.join("usr/share/doc")) == ["README"]
    assert not os.path.lexists(mnt.join("usr/share/locale"))
    assert not os.path.lexists(mnt.join("etc/motd"))


def test_python_runs_in_a_chroot(mnt):
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    r = subprocess.run([chroot, mnt.path, "python3", "-c",
                        "import json, sqlite3; print(sqlite3.sqlite_version, json.dumps([1]))"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("[1]"), r.stdout
    mnt.assert_healthy()
