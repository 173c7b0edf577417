"""Hostile and malformed layer tars, end to end through `layerfs mount`.

Each layer is written here, member by member (tarfile, or header blocks built by hand where no tar
writer would produce them), and each case asserts its defined outcome:
  - refused: exit status 1, one `layerfs: error:` line naming the layer, the entry and the problem,
    nothing mounted, nothing of the layer left in the cache;
  - skipped: the mount comes up, the entry is not shown, a `layerfs: warning:` line names it;
  - served: what the mount shows.
No case may crash, hang, or touch a file outside the cache, the scratch directory and the
mount point: symlinks in the image point at a directory of the test, which is checked untouched.

The outcomes follow docker's layer extraction (moby pkg/archive), which refuses an entry or a hard
link that leads outside the root ("breakout"), and Go's archive/tar reader (umoci, containerd),
which refuses headers it cannot read; entries that name nothing a file system can hold (an empty
name, a name over 255 bytes, a hard link to a directory or to nothing) are skipped with a warning.
"""
import errno
import io
import json
import os
import subprocess
import tarfile
import time

import pytest

import make_image
from conftest import ASAN_BUILD, daemon_pids, is_mounted, run_layerfs
from make_image import Layer

ROOT_LEAVE = "leaves the image root"


# --- building layers -----------------------------------------------------------------------------

def member(name, type_=tarfile.REGTYPE, data=b"", link="", mode=0o644, pax=None):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = mode
    ti.mtime = make_image.T0
    ti.size = len(data) if type_ == tarfile.REGTYPE else 0
    ti.linkname = link
    ti.pax_headers = dict(pax or {})
    return ti, data


def tar_of(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if ti.size else None)
    return buf.getvalue()


def header(name, typeflag=b"0", size=0, mode=0o644, size_field=None):
    """One ustar header block with its checksum; `size_field` replaces the 12-byte size field."""
    h = bytearray(512)
    name = name.encode() if isinstance(name, str) else name
    h[0:len(name)] = name
    h[100:108] = b"%07o\0" % mode
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else b"%011o\0" % size
    h[136:148] = b"%011o\0" % make_image.T0
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def padded(data):
    return data + b"\0" * (-len(data) % 512)


END = b"\0" * 1024


def pax_header(records):
    body = b""
    for key, value in records:
        rest = b" %s=%s\n" % (key, value)
        n = len(rest) + 1
        while len(str(n)) + len(rest) != n:
            n += 1
        body += str(n).encode() + rest
    return header("PaxHeaders/x", b"x", len(body)) + padded(body)


def layout_of(tmp_path, layers, name="oci"):
    return make_image.write_layout(str(tmp_path), name, layers)


# --- outcomes ------------------------------------------------------------------------------------

def mount_cmd(image, tmp_path, *extra):
    mnt = tmp_path / "mnt-cli"
    mnt.mkdir(exist_ok=True)
    cache = tmp_path / "cache-cli"
    return run_layerfs("mount", str(image), str(mnt), "--cache", str(cache), "--read-only",
                       *extra), str(mnt), str(cache)


def assert_refused(tmp_path, image, *mentions, bad_layer=None):
    """The mount fails with one error line holding `mentions`; nothing is mounted, and the cache
    holds no index of `bad_layer` (the refused layer's tar) and no temporary file."""
    r, mnt, cache = mount_cmd(image, tmp_path)
    lines = r.stderr.splitlines()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), r.stderr
    for word in mentions:
        assert word in lines[0], "%r not in: %s" % (word, lines[0])
    assert not is_mounted(mnt) and not daemon_pids(mnt)
    assert os.listdir(mnt) == []
    files = [os.path.join(dp, n) for dp, _, ns in os.walk(cache) for n in ns]
    assert not [f for f in files if ".tmp-" in f], files
    if bad_layer is not None:
        bad = make_image.sha256(bad_layer)
        assert not [f for f in files if bad in f], files
    return lines[0]


def tree_of(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", f.read())
    return out


@pytest.fixture
def outside(tmp_path):
    """A directory outside every image, cache and mount, with a file that must stay untouched."""
    d = tmp_path / "outside"
    d.mkdir()
    victim = d / "victim"
    victim.write_bytes(b"outside the image\n")
    os.chmod(victim, 0o600)
    before = os.lstat(victim)

    class Outside:
        path = str(d)
        file = str(victim)

        @staticmethod
        def assert_untouched():
            after = os.lstat(str(victim))
            assert victim.read_bytes() == b"outside the image\n"
            assert sorted(os.listdir(str(d))) == ["victim"]
            assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns,
                    after.st_ctime_ns, after.st_ino) == (
                before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns,
                before.st_ctime_ns, before.st_ino)
    return Outside()


# --- 1. hostile paths ----------------------------------------------------------------------------

REFUSED_PATHS = {
    "dot-dot climbing out": (tar_of(member("../escape", data=b"x")),
                             ['entry 0 "../escape"', ROOT_LEAVE]),
    "dot-dot climbing out midway": (tar_of(member("a/b/../../../escape", data=b"x")),
                                    ['"a/b/../../../escape"', ROOT_LEAVE]),
    "dot-dot in a PAX path": (tar_of(member("x", data=b"x", pax={"path": "../../etc/passwd"})),
                              ['"../../etc/passwd"', ROOT_LEAVE]),
    "hard link climbing out": (tar_of(member("f", tarfile.LNKTYPE, link="../../etc/passwd")),
                               ['entry 0 "f"', 'hard link target "../../etc/passwd"', ROOT_LEAVE]),
    "whiteout of dot-dot": (tar_of(member("d/.wh..."), member("ok", data=b"ok")),
                            ['entry 0 "d/.wh..."', "whiteout names no file"]),
    "whiteout of nothing": (tar_of(member(".wh.")), ['entry 0 ".wh."', "whiteout names no file"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED_PATHS))
def test_hostile_path_refuses_the_layer(case, tmp_path, outside):
    layer, mentions = REFUSED_PATHS[case]
    good = tar_of(member("good", data=b"good\n"))
    image = layout_of(tmp_path, [good, layer])
    assert_refused(tmp_path, image, "layer 2 of 2", *mentions, bad_layer=layer)
    outside.assert_untouched()


SKIPPED = {
    # name: (members, tree shown besides "ok", warning text)
    "empty name": ([member("", data=b"x")], {}, 'entry 0 "": the image root must be a directory'),
    "name of 256 bytes": ([member("d/" + "n" * 256, data=b"x")], {},
                          "name longer than 255 bytes; entry skipped"),
    "directory name of 256 bytes": ([member("d" * 256 + "/f", data=b"x")], {},
                                    "a path component is longer than 255 bytes"),
    "hard link to a missing path": ([member("hl", tarfile.LNKTYPE, link="missing")], {},
                                    'hard link "hl" to "missing": the target is not in the layers '
                                    'below; not shown'),
    "hard link to a directory": ([member("d/", tarfile.DIRTYPE, mode=0o755),
                                  member("hl", tarfile.LNKTYPE, link="d")], {"d": ("dir",)},
                                 'entry 1 "hl": hard link to a directory; entry skipped'),
    "hard link to the root": ([member("hl", tarfile.LNKTYPE, link="./")], {},
                              "hard link to the root directory; entry skipped"),
    "hard links in a cycle": ([member("x", tarfile.LNKTYPE, link="y"),
                               member("y", tarfile.LNKTYPE, link="x")], {},
                              'hard link "x" to "y": the target is not in the layers below'),
    "whiteout used as a directory": ([member("a/.wh.b/c", data=b"x")], {},
                                     'entry 0 "a/.wh.b/c": a whiteout name is used as a directory'),
    "whiteout of a path in another directory": ([member(".wh..wh/../x", data=b"x")],
                                                {"x": ("file", b"x")}, None),
}


@pytest.mark.parametrize("case", sorted(SKIPPED))
def test_hostile_entry_is_skipped_with_a_warning(case, tmp_path, mounter):
    members, shown, warning = SKIPPED[case]
    image = layout_of(tmp_path, [tar_of(*members, member("ok", data=b"ok\n"))])
    m = mounter.mount(image)
    want = dict(shown, ok=("file", b"ok\n"))
    assert tree_of(m.path) == want
    warnings = [l for l in m.log().splitlines() if l.startswith("layerfs: warning:")]
    if warning is None:
        assert not warnings, warnings
    else:
        assert any(warning in l for l in warnings), warnings
    m.assert_healthy()


def test_leading_slashes_and_doubled_separators_name_paths_inside(tmp_path, mounter):
    image = layout_of(tmp_path, [tar_of(member("//etc//passwd", data=b"inside\n"),
                                        member("/../..//x", data=b"x\n", pax={"path": "/abs"}))])
    m = mounter.mount(image)
    assert tree_of(m.path) == {"etc": ("dir",), "etc/passwd": ("file", b"inside\n"),
                               "abs": ("file", b"x\n")}


def test_slash_in_a_pax_path_separates_components(tmp_path, mounter):
    """PAX `path` and `linkpath` are paths: a '/' in them is a separator, never part of a name."""
    image = layout_of(tmp_path, [tar_of(
        member("x", data=b"in q\n", pax={"path": "p/q"}),
        member("l", tarfile.SYMTYPE, link="q/../q", pax={"path": "p/l"}))])
    m = mounter.mount(image)
    assert tree_of(m.path) == {"p": ("dir",), "p/q": ("file", b"in q\n"),
                               "p/l": ("link", "q/../q")}


def test_a_pax_path_ending_in_slash_on_a_file_with_data_is_refused(tmp_path):
    """libarchive reads a regular-file header named "p/q/" as a directory, and its data then as
    the next header: the layer is refused (Go's reader, too, sees no valid header there)."""
    image = layout_of(tmp_path, [tar_of(member("x", data=b"x", pax={"path": "p/q/"}))])
    assert_refused(tmp_path, image, "layer 1 of 1", 'after entry 0 "p/q/"')


def test_names_and_paths_too_long_for_a_file_system(tmp_path, mounter):
    """Names of 256 bytes are skipped (no local file system can hold them) and looking one up
    fails with ENAMETOOLONG, as on ext4. A path of more than 4096 bytes is served: the kernel
    refuses it whole (ENAMETOOLONG), and it is reached one directory at a time."""
    deep = "/".join(["c%03d" % i + "x" * 246 for i in range(20)])  # 20 x 250 bytes
    assert len(deep) > 4096
    image = layout_of(tmp_path, [tar_of(
        member("n" * 255, data=b"255\n"),
        member("n" * 256, data=b"256\n"),
        member(deep + "/leaf", data=b"deep\n"))])
    m = mounter.mount(image, writable=True)
    names = os.listdir(m.path)
    assert "n" * 255 in names and "n" * 256 not in names
    with open(m.join("n" * 255), "rb") as f:
        assert f.read() == b"255\n"
    for name in ("n" * 256, "n" * 1000, "n" * 4000):
        with pytest.raises(OSError) as e:
            os.lstat(m.join(name))
        assert e.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as e:
        os.lstat(m.join(deep, "leaf"))
    assert e.value.errno == errno.ENAMETOOLONG
    fd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in deep.split("/"):
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf, 100) == b"deep\n"
        os.close(leaf)
        with pytest.raises(OSError) as e:  # and a writable mount cannot make such a name either
            os.open("x" * 256, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        assert e.value.errno == errno.ENAMETOOLONG
    finally:
        os.close(fd)
    m.assert_healthy()


def test_symlinks_out_of_the_root_are_shown_and_never_followed(tmp_path, mounter, outside):
    """Symlinks pointing outside the root are served as symlinks with their targets as stored.
    Changing them (owner, times, xattrs, rename, hard link, delete) copies up the link itself,
    and committing writes it as a link: the file it points at is never read or changed."""
    l0 = Layer()
    l0.symlink("abs", outside.file)
    l0.symlink("absdir", outside.path)
    l0.symlink("rel", "../" * 12 + outside.file.lstrip("/"))
    l0.symlink("gone", outside.file)
    l0.dir("d/")
    l0.file("d/f", "f\n")
    image = layout_of(tmp_path, [l0.close()])
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(image, writable=True, options=("--scratch", scratch))
    assert os.readlink(m.join("abs")) == outside.file
    assert os.readlink(m.join("rel")) == "../" * 12 + outside.file.lstrip("/")
    os.chown(m.join("abs"), 1234, 1234, follow_symlinks=False)
    os.utime(m.join("rel"), ns=(1, 1), follow_symlinks=False)
    os.setxattr(m.join("absdir"), "trusted.layerfs-test", b"1", follow_symlinks=False)
    os.rename(m.join("abs"), m.join("d/abs-moved"))
    os.link(m.join("rel"), m.join("rel-link"), follow_symlinks=False)
    os.unlink(m.join("gone"))
    st = os.lstat(m.join("d/abs-moved"))
    assert (st.st_uid, st.st_gid) == (1234, 1234)
    assert os.readlink(m.join("d/abs-moved")) == outside.file
    assert mounter.unmount(m) == []
    outside.assert_untouched()
    upper = os.path.join(scratch, "upper")
    for name in ("d/abs-moved", "rel", "rel-link", "absdir"):
        assert os.path.islink(os.path.join(upper, name)), name

    out = str(tmp_path / "committed")
    r = run_layerfs("commit", scratch, image, out, "--cache", str(tmp_path / "cache-c"),
                    "--compress", "none")
    assert r.returncode == 0, r.stderr
    outside.assert_untouched()
    with open(os.path.join(out, "index.json")) as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"].split(":")[1]
    with open(os.path.join(out, "blobs", "sha256", manifest_digest)) as f:
        top = json.load(f)["layers"][-1]["digest"].split(":")[1]
    with tarfile.open(os.path.join(out, "blobs", "sha256", top)) as t:
        entries = {ti.name[2:] if ti.name.startswith("./") else ti.name: ti
                   for ti in t.getmembers()}
        for name, ti in entries.items():
            if ti.isreg():
                data = t.extractfile(ti).read()
                assert b"outside the image" not in data, name
    assert entries["d/abs-moved"].issym() and entries["d/abs-moved"].linkname == outside.file
    assert entries["rel"].issym() or entries["rel"].islnk()
    assert ".wh.gone" in entries and ".wh.abs" in entries


def test_hard_link_chain_across_layers_is_one_inode(tmp_path, mounter):
    l0, l1, l2, l3 = Layer(), Layer(), Layer(), Layer()
    l0.file("a", "content\n", mode=0o640)
    l0.hardlink("a0", "a")
    l1.hardlink("b", "a0")  # names a lower name that is itself a hard link
    l2.hardlink("c", "b")
    l3.hardlink("d", "c")
    for i in range(50):  # a chain inside one layer as well
        l3.hardlink("e%d" % (i + 1), "e%d" % i if i else "d")
    image = layout_of(tmp_path, [l.close() for l in (l0, l1, l2, l3)])
    m = mounter.mount(image)
    names = ["a", "a0", "b", "c", "d"] + ["e%d" % i for i in range(1, 51)]
    inodes = {os.lstat(m.join(n)).st_ino for n in names}
    assert len(inodes) == 1
    assert os.lstat(m.join("e50")).st_nlink == len(names)
    with open(m.join("e50"), "rb") as f:
        assert f.read() == b"content\n"
    m.assert_healthy()


# --- 2. malformed tars ---------------------------------------------------------------------------

def size_base256(value):
    """A 12-byte base-256 size field (GNU extension), two's complement for negative values."""
    return bytes([0x80 if value >= 0 else 0xFF]) + (value % (1 << 88)).to_bytes(11, "big")


MALFORMED = {
    "wrong header checksum": (
        header("a", size=1) + padded(b"a") + bytes([0x41]) + header("b")[1:] + END,
        ['after entry 0 "a"', "corrupt or truncated tar"]),
    "wrong checksum in the first header": (bytes([0x41]) + header("a")[1:] + END,
                                           ["not a tar archive"]),
    "negative size": (header("a", size_field=size_base256(-1)) + END, ["negative size"]),
    "huge size": (header("a", size_field=size_base256(1 << 62)) + padded(b"x") + END,
                  ['entry 0 "a"', "Truncated"]),
    "size past the end of the blob": (header("a", size=100000) + padded(b"x" * 1000),
                                      ['entry 0 "a"', "Truncated"]),
    "truncated blob": (header("a", size=10) + padded(b"0123456789") + header("b", size=5000)
                       + b"y" * 700, ['entry 1 "b"', "Truncated"]),
    "truncated inside a header": (header("a", size=10) + padded(b"0123456789") + b"\0" * 100
                                  + header("b")[:300], ["corrupt or truncated tar"]),
    "sparse map offset no int64 holds": (
        pax_header([(b"GNU.sparse.major", b"0"), (b"GNU.sparse.minor", b"1"),
                    (b"GNU.sparse.name", b"s"), (b"GNU.sparse.realsize", b"2000"),
                    (b"GNU.sparse.map", b"9223372036854775000,10")])
        + header("GNUSparseFile.0/s", size=10) + padded(b"0123456789")
        + header("secret", size=6, mode=0o600) + padded(b"SECRET") + END,
        ['entry 0 "s"', "the tar stores 512"]),
    "sparse run longer than the data stored": (
        pax_header([(b"GNU.sparse.major", b"0"), (b"GNU.sparse.minor", b"1"),
                    (b"GNU.sparse.name", b"s"), (b"GNU.sparse.realsize", b"5000"),
                    (b"GNU.sparse.map", b"0,4000")])
        + header("GNUSparseFile.0/s", size=10) + padded(b"0123456789") + END,
        ['entry 0 "s"', "sparse map needs 4000 bytes"]),
    "PAX header claiming 300 MiB": (header("PaxHeaders/x", b"x", 300 << 20) + padded(b"x") + END,
                                    ["Special header too large"]),
    "GNU long name claiming 300 MiB": (header("././@LongLink", b"L", 300 << 20) + padded(b"x")
                                       + END, ["Special header too large"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_tar_refuses_the_layer(case, tmp_path):
    layer, mentions = MALFORMED[case]
    image = layout_of(tmp_path, [tar_of(member("good", data=b"good\n")), layer])
    assert_refused(tmp_path, image, "layer 2 of 2", *mentions, bad_layer=layer)


def run_measured(*args):
    """Runs layerfs; returns (exit status, stderr, its own peak RSS in KiB)."""
    from conftest import layerfs_binary
    proc = subprocess.Popen([layerfs_binary(), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, usage.ru_maxrss


def test_pax_header_of_hundreds_of_megabytes_is_refused_without_reading_it(tmp_path):
    """A real 200 MiB PAX header (a sparse file on disk): refused at its size, in bounded memory."""
    path = str(tmp_path / "layer.tar")
    size = 200 << 20
    with open(path, "wb") as f:
        f.write(header("PaxHeaders/x", b"x", size))
        f.write(b"%d comment=" % size)
        f.truncate(512 + size + (-size % 512))
        f.seek(0, os.SEEK_END)
        f.write(header("a") + END)
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    d = tmp_path / "docker"
    d.mkdir()
    os.rename(path, str(d / "layer.tar"))
    config = make_image.config_json([h.hexdigest()])
    (d / "config.json").write_bytes(config)
    (d / "manifest.json").write_text(json.dumps(
        [{"Config": "config.json", "RepoTags": [], "Layers": ["layer.tar"]}]))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code, err, rss = run_measured("mount", str(d), str(mnt), "--cache", str(tmp_path / "cache"),
                                  "--read-only")
    assert code == 1, err
    assert "layer 1 of 1" in err and "layer.tar" in err and "Special header too large" in err, err
    assert "larger than 1 MiB" in err, err
    assert not is_mounted(str(mnt))
    # Reading the header would take its 200 MiB on top of the process's own size (about 10 MiB,
    # or about 175 MiB of AddressSanitizer's shadow memory and quarantine in the sanitizer build).
    limit = (300 if ASAN_BUILD else 150) * 1024
    assert rss < limit, "layerfs used %d KiB for a 200 MiB header" % rss


def test_garbage_after_the_end_of_archive_is_ignored(tmp_path, mounter):
    """Like GNU tar and Go's reader, the archive ends at its end-of-archive blocks; what follows
    is covered by the digest but holds no entries."""
    layer = tar_of(member("f", data=b"f\n")) + b"GARBAGE!" * 1000 + header("hidden", size=1) + \
        padded(b"h") + END
    m = mounter.mount(layout_of(tmp_path, [layer]))
    assert tree_of(m.path) == {"f": ("file", b"f\n")}
    m.assert_healthy()


def zero_length_files(prefix, count, width=7):
    """`count` ustar headers of empty files PREFIX + 2*width digits, written without a loop per
    entry: digits i and their complement 9-i, so that every header has the same checksum."""
    template = bytearray(header(prefix + "0" * width + "9" * width))
    out = bytearray(bytes(template) * count)
    p = len(prefix)
    complement = bytes.maketrans(b"0123456789", b"9876543210")
    for k in range(width):
        place = 10 ** (width - 1 - k)
        run = b"".join(bytes([48 + d]) * place for d in range(10))
        column = (run * (count // len(run) + 1))[:count]
        out[p + k::512] = column
        out[p + width + k::512] = column.translate(complement)
    return out


def test_a_million_empty_files_in_one_directory(tmp_path, mounter):
    """1,000,000 zero-length entries, all in one directory: indexed in linear time and memory,
    and served (lookups of the first, a middle and the last one; a partial listing)."""
    count = 1000000
    d = tmp_path / "docker"
    d.mkdir()
    import hashlib
    h = hashlib.sha256()
    with open(str(d / "layer.tar"), "wb") as f:
        for start in range(0, count, 100000):
            chunk = zero_length_files("dir/f", 100000)
            # Chunk c holds c*100000 .. c*100000+99999.
            c = start // 100000  # the 10^5 digit, at offset 1 of the seven
            chunk[5 + 1::512] = b"%d" % c * 100000
            chunk[5 + 7 + 1::512] = b"%d" % (9 - c) * 100000
            f.write(chunk)
            h.update(chunk)
        f.write(END)
        h.update(END)
    (d / "config.json").write_bytes(make_image.config_json([h.hexdigest()]))
    (d / "manifest.json").write_text(json.dumps(
        [{"Config": "config.json", "RepoTags": [], "Layers": ["layer.tar"]}]))
    started = time.monotonic()
    m = mounter.mount(str(d), verbose=False)
    took = time.monotonic() - started
    for i in (0, 123456, 999999):
        digits = "%07d" % i
        name = "f" + digits + digits.translate(str.maketrans("0123456789", "9876543210"))
        st = os.lstat(m.join("dir", name))
        assert st.st_size == 0
    assert os.lstat(m.join("dir")).st_nlink == 2
    with os.scandir(m.join("dir")) as it:
        for n, _ in enumerate(it):
            if n == 20000:
                break
    assert took < 120, "mounting took %.1f s" % took
    m.assert_healthy()


def test_4096_nested_directories(tmp_path, mounter, request):
    """Each level one entry, 4096 deep (a PAX path of 8 KiB at the bottom): served, written to
    (the deepest file copied up with all its parents; its 8 KiB image path is more than an ext4
    xattr holds, so its content is copied at once) and committed."""
    parts = ["d"] * 4096
    l = Layer()
    for depth in range(1, len(parts) + 1):
        l.dir("/".join(parts[:depth]) + "/")
    l.file("/".join(parts) + "/leaf", "bottom\n")
    image = layout_of(tmp_path, [l.close()])
    scratch = str(tmp_path / "scratch")
    # Python's rmtree (pytest's clean-up of old temporary directories) recurses per level.
    request.addfinalizer(lambda: subprocess.run(["rm", "-rf", scratch]))
    m = mounter.mount(image, writable=True, options=("--scratch", scratch))
    fd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open("leaf", os.O_RDWR | os.O_APPEND, dir_fd=fd)
        assert os.read(leaf, 100) == b"bottom\n"
        os.write(leaf, b"appended\n")
        os.close(leaf)
    finally:
        os.close(fd)
    m.assert_healthy()
    assert mounter.unmount(m) == []
    out = str(tmp_path / "committed")
    r = run_layerfs("commit", scratch, image, out, "--cache", str(tmp_path / "cache-c"))
    assert r.returncode == 0, r.stderr
    m2 = mounter.mount(out)
    fd = os.open(m2.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf, 100) == b"bottom\nappended\n"
        os.close(leaf)
    finally:
        os.close(fd)


def test_the_same_path_ten_thousand_times(tmp_path, mounter):
    """The last of 10,000 entries of one path shows; a hard link to an early one keeps that
    one's content; alternating file and directory leaves the last directory, without the
    children of the earlier ones."""
    l = Layer()
    l.file("same", "version 0\n")
    l.hardlink("early", "same")
    for i in range(1, 10000):
        l.file("same", "version %d\n" % i)
    for i in range(2000):
        if i % 2:
            l.file("flip", "file %d\n" % i)
        else:
            l.dir("flip/")
            l.file("flip/child%d" % i, "child\n")
    image = layout_of(tmp_path, [l.close()])
    m = mounter.mount(image)
    with open(m.join("same"), "rb") as f:
        assert f.read() == b"version 9999\n"
    with open(m.join("early"), "rb") as f:
        assert f.read() == b"version 0\n"
    assert os.path.isfile(m.join("flip"))
    with open(m.join("flip"), "rb") as f:
        assert f.read() == b"file 1999\n"
    assert sorted(os.listdir(m.path)) == ["early", "flip", "same"]
    m.assert_healthy()
