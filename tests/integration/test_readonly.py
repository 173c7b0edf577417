"""What a user does with a mounted image: reads in every way, and writes that must fail."""
import ctypes
import errno
import mmap
import os
import stat
import subprocess

import pytest

import make_image
from make_image import (CAP_NET_BIND, GNU_SPARSE_RUNS, GNU_SPARSE_SIZE, PAX_SPARSE_RUNS,
                        PAX_SPARSE_SIZE)


@pytest.fixture
def mnt(image, mounter):
    return mounter.mount(image.form("oci-plain"))


def sparse_bytes(seed, runs, size):
    out = bytearray(size)
    for (off, length), data in zip(runs, make_image.sparse_data(seed, runs)):
        out[off:off + length] = data
    return bytes(out)


EXPECTED = {
    "big/random.bin": make_image.pattern("random", 300 * 1024),
    "sparse/gnu": sparse_bytes("gnu", GNU_SPARSE_RUNS, GNU_SPARSE_SIZE),
    "sparse/pax": sparse_bytes("pax", PAX_SPARSE_RUNS, PAX_SPARSE_SIZE),
    "etc/shadowed": b"version 3: the one that shows\n",
    "etc/empty": b"",
}


def expect_errno(code, fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == code, "%s%r: %s, expected %s" % (
        fn.__name__, args, errno.errorcode.get(e.value.errno), errno.errorcode[code])


# --- writes fail with EROFS --------------------------------------------------------------------

WRITES = {
    "create": lambda m: os.open(m.join("etc/new-file"), os.O_WRONLY | os.O_CREAT, 0o644),
    "open-for-write": lambda m: os.open(m.join("etc/hostname"), os.O_WRONLY),
    "open-rdwr": lambda m: os.open(m.join("etc/hostname"), os.O_RDWR),
    "open-append": lambda m: os.open(m.join("etc/hostname"), os.O_WRONLY | os.O_APPEND),
    "open-trunc": lambda m: os.open(m.join("etc/hostname"), os.O_RDONLY | os.O_TRUNC),
    "truncate": lambda m: os.truncate(m.join("etc/hostname"), 0),
    "unlink": lambda m: os.unlink(m.join("etc/hostname")),
    "rmdir": lambda m: os.rmdir(m.join("times/dir")),
    "rename": lambda m: os.rename(m.join("etc/hostname"), m.join("etc/hostname2")),
    "mkdir": lambda m: os.mkdir(m.join("etc/newdir")),
    "symlink": lambda m: os.symlink("target", m.join("etc/newlink")),
    "link": lambda m: os.link(m.join("etc/hostname"), m.join("etc/hardlink")),
    "mknod-fifo": lambda m: os.mkfifo(m.join("etc/newfifo")),
    "chmod": lambda m: os.chmod(m.join("etc/hostname"), 0o600),
    "chown": lambda m: os.chown(m.join("etc/hostname"), 1, 1),
    "utime": lambda m: os.utime(m.join("etc/hostname"), (0, 0)),
    "setxattr": lambda m: os.setxattr(m.join("xattr/file"), "user.new", b"x"),
    "removexattr": lambda m: os.removexattr(m.join("xattr/file"), "user.comment"),
}


@pytest.mark.parametrize("op", sorted(WRITES))
def test_writes_fail_with_erofs(mnt, op):
    with pytest.raises(OSError) as e:
        fd = WRITES[op](mnt)
        if isinstance(fd, int):
            os.close(fd)
    assert e.value.errno == errno.EROFS, errno.errorcode.get(e.value.errno)
    assert not os.path.lexists(mnt.join("etc/new-file"))
    with open(mnt.join("etc/hostname"), "rb") as f:
        assert f.read() == b"layerfs-test\n"
    mnt.assert_healthy()


def test_access_reports_read_only(mnt):
    assert os.access(mnt.join("etc/hostname"), os.R_OK)
    assert not os.access(mnt.join("etc/hostname"), os.W_OK)
    assert os.access(mnt.join("bin/tool"), os.X_OK)


# --- reads -------------------------------------------------------------------------------------

def test_statfs(mnt, image):
    sv = os.statvfs(mnt.path)
    assert sv.f_namemax == 255
    assert sv.f_bsize > 0 and sv.f_frsize > 0
    assert sv.f_flag & os.ST_RDONLY
    served = 0
    inodes = set()
    for root, dirs, files in os.walk(image.rootfs):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            inodes.add(st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                served += st.st_size
    assert sv.f_blocks * sv.f_frsize >= served
    assert sv.f_files >= len(inodes)


def test_xattrs(mnt):
    f = mnt.join("xattr/file")
    assert os.listxattr(f) == ["user.comment"]
    assert os.getxattr(f, "user.comment") == b"hello"
    assert os.getxattr(mnt.join("xattr/cap"), "security.capability") == CAP_NET_BIND
    assert os.getxattr(mnt.join("xattr/binary"), "user.bin") == b"\xff\xfe\x00\x01"
    assert os.getxattr(mnt.join("xattr"), "user.dir") == b"on a directory"
    assert os.listxattr(mnt.join("etc/hostname")) == []
    expect_errno(errno.ENODATA, os.getxattr, f, "user.missing")
    expect_errno(errno.ENODATA, os.getxattr, mnt.join("etc/hostname"), "user.comment")


def test_xattr_size_query_and_small_buffer(mnt):
    libc = ctypes.CDLL(None, use_errno=True)
    path = mnt.join("xattr/cap").encode()
    name = b"security.capability"
    assert libc.lgetxattr(path, name, None, 0) == len(CAP_NET_BIND)
    buf = ctypes.create_string_buffer(4)
    assert libc.lgetxattr(path, name, buf, 4) == -1
    assert ctypes.get_errno() == errno.ERANGE
    assert libc.llistxattr(path, None, 0) == len(name) + 1
    assert libc.llistxattr(path, buf, 4) == -1
    assert ctypes.get_errno() == errno.ERANGE


def test_readlink(mnt):
    expected = {
        "bin/rel-link": "tool",
        "bin/rel-link-hard": "tool",
        "bin/abs-link": "/etc/hostname",
        "bin/dangling": "/does/not/exist",
        "times/link": "ns",
        "lib-dir": "bin",
        "names/long-target": "p" * 150,
        "names/gnu-long-target": "g" * 150,
    }
    for path, target in expected.items():
        assert os.readlink(mnt.join(path)) == target, path
        assert os.lstat(mnt.join(path)).st_size == len(target.encode()), path
    with open(mnt.join("bin/rel-link"), "rb") as f:
        assert f.read() == b"#!/bin/sh\necho tool\n"
    with open(mnt.join("names/long-target"), "rb") as f:
        assert f.read() == b"long PAX name\n"
    assert not os.path.exists(mnt.join("bin/dangling"))
    expect_errno(errno.EINVAL, os.readlink, mnt.join("etc/hostname"))
    expect_errno(errno.EINVAL, os.readlink, mnt.join("etc"))


def seek(fd, offset, whence):
    try:
        return os.lseek(fd, offset, whence)
    except OSError as e:
        return errno.errorcode[e.errno]


def runs_to_seeks(runs, size):
    """(offset, SEEK_DATA result, SEEK_HOLE result) at interesting offsets of a sparse file."""
    out = []
    points = {0, size - 1, size}
    for off, length in runs:
        points.update({off - 1, off, off + length - 1, off + length})
    for p in sorted(x for x in points if x >= 0):
        if p >= size:
            out.append((p, "ENXIO", "ENXIO"))
            continue
        data = next((max(p, off) for off, length in runs if off + length > p), "ENXIO")
        hole = p
        for off, length in runs:
            if off <= hole < off + length:
                hole = off + length
        out.append((p, data, min(hole, size)))
    return out


@pytest.mark.parametrize("path,runs,size", [
    ("sparse/gnu", GNU_SPARSE_RUNS, GNU_SPARSE_SIZE),
    ("sparse/pax", PAX_SPARSE_RUNS, PAX_SPARSE_SIZE),
])
def test_seek_data_and_hole_on_sparse_file(mnt, path, runs, size):
    fd = os.open(mnt.join(path), os.O_RDONLY)
    try:
        got = [(p, seek(fd, p, os.SEEK_DATA), seek(fd, p, os.SEEK_HOLE))
               for p, _, _ in runs_to_seeks(runs, size)]
    finally:
        os.close(fd)
    assert got == runs_to_seeks(runs, size)
    st = os.stat(mnt.join(path))
    assert st.st_size == size
    assert st.st_blocks * 512 < size, "a sparse file should not claim blocks for its holes"


def test_seek_data_and_hole_on_plain_files(mnt):
    fd = os.open(mnt.join("big/random.bin"), os.O_RDONLY)
    try:
        assert os.lseek(fd, 1000, os.SEEK_DATA) == 1000
        assert os.lseek(fd, 1000, os.SEEK_HOLE) == 300 * 1024
        assert seek(fd, 300 * 1024, os.SEEK_DATA) == "ENXIO"
    finally:
        os.close(fd)
    fd = os.open(mnt.join("etc/empty"), os.O_RDONLY)
    try:
        assert seek(fd, 0, os.SEEK_DATA) == "ENXIO"
        assert seek(fd, 0, os.SEEK_HOLE) == "ENXIO"
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_read_whole_and_at_offsets(mnt, path):
    want = EXPECTED[path]
    with open(mnt.join(path), "rb") as f:
        assert f.read() == want
    fd = os.open(mnt.join(path), os.O_RDONLY)
    try:
        size = len(want)
        offsets = sorted({0, 1, 511, 4095, 4096, 4097, 131071, 262143, 262144 + 8191,
                          size // 2, size - 1, size, size + 10} - {-1})
        for off in offsets:
            for length in (1, 100, 4096, 70000):
                assert os.pread(fd, length, off) == want[off:off + length], (off, length)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["big/random.bin", "sparse/gnu"])
def test_read_through_mmap(mnt, path):
    want = EXPECTED[path]
    with open(mnt.join(path), "rb") as f:
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            assert len(mm) == len(want)
            assert mm[:] == want
            assert mm[len(want) - 5:] == want[-5:]


def test_hard_links(mnt):
    groups = [
        ["hl/orig", "hl/link1", "hl/link2", "hl/upper-link"],
        ["etc/twice", "etc/twice-link"],
        ["bin/rel-link", "bin/rel-link-hard"],
        ["app/hello.txt", "app/hello-link.txt"],
    ]
    for group in groups:
        stats = [os.lstat(mnt.join(p)) for p in group]
        assert len({st.st_ino for st in stats}) == 1, group
        assert all(st.st_nlink == len(group) for st in stats), (group, [s.st_nlink for s in stats])
    for single in ("hl/keeps-doomed", "hl2/a", "hl2/b"):
        assert os.lstat(mnt.join(single)).st_nlink == 1, single
    with open(mnt.join("etc/twice-link"), "rb") as f:
        assert f.read() == b"twice v1\n"
    with open(mnt.join("hl2/b"), "rb") as f:
        assert f.read() == b"A-old\n"
    assert not os.path.lexists(mnt.join("hl/doomed"))


def test_whiteouts_opaque_and_replacements(mnt):
    listing = lambda p: sorted(os.listdir(mnt.join(p)))
    assert not os.path.lexists(mnt.join("etc/remove-me"))
    assert not os.path.lexists(mnt.join("var/cache/app"))
    assert listing("var/cache") == []
    assert listing("opt/opaque") == ["keep-name", "new"]
    assert listing("recreate") == ["new-child"]
    assert os.path.isdir(mnt.join("data/file2dir")) and listing("data/file2dir") == ["inner"]
    assert stat.S_ISREG(os.lstat(mnt.join("data/dir2file")).st_mode)
    assert os.path.islink(mnt.join("lib-dir"))
    assert not os.path.islink(mnt.join("sym2dir")) and listing("sym2dir") == ["file"]
    assert not [n for root, dirs, files in os.walk(mnt.path) for n in dirs + files
                if n.startswith(".wh.")]
    for path in ("etc/.wh.remove-me", "opt/opaque/.wh..wh..opq", ".wh.never-existed"):
        expect_errno(errno.ENOENT, os.lstat, mnt.join(path))


def run_tool(argv, cwd):
    return subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=True, env=dict(os.environ, LC_ALL="C", TZ="UTC")).stdout


def test_find_agrees_with_reference(mnt, image):
    fmt = r"%P\0%y %#m %U:%G links=%n size=%s target=%l\0"

    def find(root):
        fields = run_tool(["find", ".", "-printf", fmt], root).split(b"\0")[:-1]
        entries = dict(zip(fields[::2], fields[1::2]))
        # Directory sizes depend on the file system holding the tree.
        return {path: attrs.split(b" size=")[0] if attrs.startswith(b"d ") else attrs
                for path, attrs in entries.items()}

    got, want = find(mnt.path), find(image.rootfs)
    assert sorted(got) == sorted(want)
    assert {p: a for p, a in got.items() if want[p] != a} == {}


def ls_fields(line):
    """An `ls -ln` line as fields, a directory's size blanked (it depends on the file system)."""
    if line[:1] not in b"-dlcbps" or len(line.split()) < 7:
        return [line]  # "dir:" headers and blank lines of -R
    fields = line.split(None, 7 if line[:1] in b"cb" else 6)
    if line[:1] == b"d":
        fields[4] = b"-"
    return fields


def test_ls_l_agrees_with_reference(mnt, image):
    implied = {os.path.basename(p).encode() for p in image.implied}

    def ls(root, *args):
        out = run_tool(["ls", "-ln", "--time-style=+%s.%N", *args], root)
        return [ls_fields(line) for line in out.split(b"\n") if not line.startswith(b"total ")]

    subtrees = sorted(set(os.listdir(image.rootfs)) - set(image.implied))
    assert ls(mnt.path, "-R", *subtrees) == ls(image.rootfs, "-R", *subtrees)
    top = lambda root: [f for f in ls(root) if f[-1] not in implied]
    assert top(mnt.path) == top(image.rootfs)


class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_uint16), ("d_type", ctypes.c_uint8),
                ("d_name", ctypes.c_char * 256)]


def test_large_directory_listing_and_seekdir(mnt):
    names = os.listdir(mnt.join("many"))
    assert sorted(names) == sorted(make_image.many_name(i) for i in range(50, 400))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.readdir.restype = ctypes.POINTER(Dirent)
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]
    d = libc.opendir(mnt.join("many").encode())
    assert d, os.strerror(ctypes.get_errno())
    try:
        entries = []  # (position before the entry, name, d_type)
        while True:
            pos = libc.telldir(d)
            ent = libc.readdir(d)
            if not ent:
                break
            entries.append((pos, ent.contents.d_name, ent.contents.d_type))
        assert sorted(n for _, n, _ in entries) == sorted([b".", b".."] + [
            os.fsencode(n) for n in names])
        assert {t for _, n, t in entries if n not in (b".", b"..")} == {8}  # DT_REG
        for k in (len(entries) // 3, len(entries) - 1, 2):
            libc.seekdir(d, entries[k][0])
            again = [libc.readdir(d).contents.d_name for _ in range(min(5, len(entries) - k))]
            assert again == [n for _, n, _ in entries[k:k + 5]], k
    finally:
        libc.closedir(d)


def test_concurrent_reads(mnt):
    import concurrent.futures
    import random
    jobs = []
    rng = random.Random(7)
    for path in ("big/random.bin", "sparse/gnu", "sparse/pax"):
        size = len(EXPECTED[path])
        for _ in range(200):
            off = rng.randrange(size)
            jobs.append((path, off, rng.choice((1, 777, 4096, 65536, 200000))))

    def read(job):
        path, off, length = job
        fd = os.open(mnt.join(path), os.O_RDONLY)
        try:
            return os.pread(fd, length, off) == EXPECTED[path][off:off + length]
        finally:
            os.close(fd)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, jobs))
    assert all(results), "%d of %d reads returned wrong bytes" % (results.count(False),
                                                                  len(results))


def test_root_takes_the_highest_layer_root_entry(mnt):
    st = os.stat(mnt.path)
    assert stat.S_IMODE(st.st_mode) == 0o755 and (st.st_uid, st.st_gid) == (0, 0)
    assert st.st_mtime_ns == (make_image.T0 + 30) * 10**9 + 5  # layer 3's "./"


def test_lookup_errors(mnt):
    expect_errno(errno.ENAMETOOLONG, os.lstat, mnt.join("x" * 256))
    expect_errno(errno.ENOENT, os.lstat, mnt.join("no-such-name"))
    expect_errno(errno.ENOENT, os.lstat, mnt.join("etc", ".wh.remove-me"))
    expect_errno(errno.ENOTDIR, os.lstat, mnt.join("etc/hostname/x"))
    assert os.lstat(mnt.join(make_image.NAME_MAX_NAME)).st_size == len(b"255-byte name\n")
