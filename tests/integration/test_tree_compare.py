"""tree_compare reports each kind of difference it promises (no mount needed)."""
import os
import shutil
import stat

import pytest

from tree_compare import compare_trees

T = 1700000000


def build(root):
    os.makedirs(os.path.join(root, "d", "sub"))
    with open(os.path.join(root, "d", "file"), "wb") as f:
        f.write(b"content\n")
    os.link(os.path.join(root, "d", "file"), os.path.join(root, "d", "hard"))
    with open(os.path.join(root, "other"), "wb") as f:
        f.write(b"other\n")
    os.symlink("d/file", os.path.join(root, "link"))
    os.mknod(os.path.join(root, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.setxattr(os.path.join(root, "d", "file"), "user.k", b"v")
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            os.utime(os.path.join(dirpath, name), ns=(T * 10**9, T * 10**9 + 5),
                     follow_symlinks=False)


MUTATIONS = {
    "missing": (lambda r: os.unlink(os.path.join(r, "other")), "/other: missing"),
    "unexpected": (lambda r: open(os.path.join(r, "new"), "w").close(), "/new: unexpected"),
    "mode": (lambda r: os.chmod(os.path.join(r, "other"), 0o4755), "/other: mode"),
    "owner": (lambda r: os.chown(os.path.join(r, "other"), 5, 6), "/other: owner 5:6"),
    "mtime-ns": (lambda r: os.utime(os.path.join(r, "other"), ns=(T * 10**9, T * 10**9 + 6)),
                 "/other: mtime"),
    "content": (lambda r: open(os.path.join(r, "other"), "wb").write(b"OTHER\n"),
                "/other: content differs"),
    "size": (lambda r: open(os.path.join(r, "other"), "ab").write(b"x"), "/other: size"),
    "symlink": (lambda r: (os.unlink(os.path.join(r, "link")),
                           os.symlink("d/filf", os.path.join(r, "link"))), "/link: symlink target"),
    "device": (lambda r: (os.unlink(os.path.join(r, "null")),
                          os.mknod(os.path.join(r, "null"), 0o666 | stat.S_IFCHR,
                                   os.makedev(1, 5))), "/null: device 1:5"),
    "type": (lambda r: (os.unlink(os.path.join(r, "other")),
                        os.mkdir(os.path.join(r, "other"))), "/other: is a directory"),
    "xattr": (lambda r: os.setxattr(os.path.join(r, "d", "file"), "user.k", b"w"),
              "/d/file: xattr user.k"),
    "xattr-missing": (lambda r: os.removexattr(os.path.join(r, "d", "file"), "user.k"),
                      "/d/file: xattr user.k missing"),
    "hard-link": (lambda r: (os.unlink(os.path.join(r, "d", "hard")),
                             shutil.copy2(os.path.join(r, "d", "file"),
                                          os.path.join(r, "d", "hard"))),
                  "/d/file: st_nlink 1 != expected 2"),
    "hard-link-group": (lambda r: (os.unlink(os.path.join(r, "other")),
                                   os.link(os.path.join(r, "d", "file"),
                                           os.path.join(r, "other"))),
                        "shares its inode with"),
    "dir-nlink": (lambda r: os.mkdir(os.path.join(r, "d", "sub2")), "/d: st_nlink 4"),
}


@pytest.fixture
def trees(tmp_path):
    a, e = str(tmp_path / "actual"), str(tmp_path / "expected")
    build(a)
    build(e)
    return a, e


def test_identical_trees_agree(trees):
    assert compare_trees(*trees) == []


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_each_difference_is_reported(trees, kind):
    mutate, message = MUTATIONS[kind]
    actual, expected = trees
    mutate(actual)
    diffs = compare_trees(actual, expected)
    assert any(message in d for d in diffs), diffs


def test_skip_mtime_and_root_mtime(trees):
    actual, expected = trees
    os.utime(os.path.join(actual, "d", "sub"), (0, 0))
    os.utime(actual, (0, 0))
    mtimes = [d for d in compare_trees(actual, expected) if "mtime" in d]
    assert mtimes == ["/d/sub: mtime 0.000000000 != expected %d.000000005" % T]
    assert compare_trees(actual, expected, skip_mtime=["d/sub"]) == []
