#!/usr/bin/python3
"""Writes a small multi-layer container image that exercises every layer feature layerfs serves.

    make_image.py OUT_DIR [--shell STATIC_BUSYBOX]

OUT_DIR receives the same image in every form `layerfs mount` reads:
    docker/      `docker save` directory: manifest.json, <config hex>.json, <diff_id hex>.tar
    docker.tar   the archive of that directory
    oci/         OCI image layout, gzip layers (ref name "test")
    oci-plain/   OCI image layout, uncompressed layers
    oci-zstd/    OCI image layout, zstd layers (needs the `zstd` command)
    oci.tar      the archive of oci/

The output is byte-for-byte deterministic. Layer contents, bottom to top:
    0  base tree: files, empty file, setuid/setgid/sticky and odd modes, owners beyond the ustar
       range, devices, fifo, symlinks (relative, absolute, dangling), a hard link to a symlink,
       in-layer hard links (one a chain), sub-second and far-future mtimes (PAX), xattrs
       (user.*, security.capability, a binary value), a 300 KiB file, 300 empty files in one
       directory
    1  shadowing, a file whiteout, file->dir and dir->file replacements, the same path twice,
       a hard link whose target is replaced later in the layer, long names (PAX path and GNU
       longname/longlink), names with a space, a newline and UTF-8, two sparse files (old GNU
       and PAX 1.0), entries under an existing directory the layer does not list
    2  directory whiteout, opaque directory, whiteout and re-creation in one layer, hard links
       to lower-layer files (one target replaced in layer 1), a whiteout of a missing path,
       a 350-entry directory merged with layer 0's (shadowing and whiteouts)
    3  third shadowing, implied parents, whiteout of a hard-link target, the root entry again,
       an in-layer hard link
    4  a directory replaced by a symlink and a symlink by a directory
    5  with --shell only: bin/busybox and bin/sh, bin/ls, ... linked to it (the demo's image)
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

REF_NAME = "test"
REPO_TAG = "localhost/layerfs-test:latest"
T0 = 1700000000  # 2023-11-14

# Directories no layer has an entry for: their metadata is not defined by the image (umoci makes
# them 0777 & ~umask, owned by root, with the time of unpacking as mtime).
IMPLIED_DIRS = ["app", "hl2", "deep", "deep/implied", "deep/implied/parents", "sparse"]

# security.capability v2 (20 bytes): cap_net_bind_service in permitted and effective.
CAP_NET_BIND = bytes([0x01, 0, 0, 0x02, 0, 0x04, 0, 0]) + bytes(12)

# Sparse files: (logical offset, length) data runs; the rest reads as zeros.
GNU_SPARSE_RUNS = [(0, 4096), (262144, 8192), (1048576, 100)]
GNU_SPARSE_SIZE = 1048676
PAX_SPARSE_RUNS = [(4096, 4096), (20480, 1000)]
PAX_SPARSE_SIZE = 65536  # ends in a hole

LONG_PAX_NAME = "names/" + "p" * 150
LONG_GNU_NAME = "names/" + "g" * 150
NAME_MAX_NAME = "names/" + "m" * 255


def pattern(seed, size):
    """Deterministic bytes that do not repeat within a block, so misplaced reads show."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def sparse_data(seed, runs):
    return [pattern(f"{seed}:{off}", length) for off, length in runs]


def many_name(i):
    return "entry-%03d-with-a-name-long-enough-to-fill-buffers" % i


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def _octal(value, width):
    return (b"%0*o" % (width - 1, value)) + b"\0"


class Layer:
    """One layer tar, written member by member in the order given."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, type_, mode, uid, gid, mtime, nsec, xattrs):
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = mtime
        pax = {}
        if nsec is not None:
            pax["mtime"] = f"{mtime}.{nsec:09d}"
        for key, value in (xattrs or {}).items():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "surrogateescape")
            pax["SCHILY.xattr." + key] = value
        ti.pax_headers = pax
        return ti

    def _add(self, ti, data=None, fmt=tarfile.PAX_FORMAT):
        self.tar.format = fmt
        self.tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        self.tar.format = tarfile.PAX_FORMAT

    def dir(self, name, mode=0o755, uid=0, gid=0, mtime=T0, nsec=None, xattrs=None):
        self._add(self._info(name, tarfile.DIRTYPE, mode, uid, gid, mtime, nsec, xattrs))

    def file(self, name, data, mode=0o644, uid=0, gid=0, mtime=T0, nsec=None, xattrs=None,
             fmt=tarfile.PAX_FORMAT):
        if isinstance(data, str):
            data = data.encode()
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid, mtime, nsec, xattrs)
        ti.size = len(data)
        self._add(ti, data, fmt)

    def symlink(self, name, target, mode=0o777, uid=0, gid=0, mtime=T0, nsec=None,
                fmt=tarfile.PAX_FORMAT):
        ti = self._info(name, tarfile.SYMTYPE, mode, uid, gid, mtime, nsec, None)
        ti.linkname = target
        self._add(ti, None, fmt)

    def hardlink(self, name, target, mode=0o644, mtime=T0):
        ti = self._info(name, tarfile.LNKTYPE, mode, 0, 0, mtime, None, None)
        ti.linkname = target
        self._add(ti)

    def device(self, name, kind, major, minor, mode=0o660, uid=0, gid=0, mtime=T0):
        type_ = {"c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE}[kind]
        ti = self._info(name, type_, mode, uid, gid, mtime, None, None)
        ti.devmajor, ti.devminor = major, minor
        self._add(ti)

    def fifo(self, name, mode=0o644, mtime=T0):
        self._add(self._info(name, tarfile.FIFOTYPE, mode, 0, 0, mtime, None, None))

    def whiteout(self, path):
        parent, base = os.path.split(path)
        self.file(os.path.join(parent, ".wh." + base), b"", mode=0o600)

    def opaque(self, dir_path):
        self.file(os.path.join(dir_path, ".wh..wh..opq"), b"", mode=0o600)

    def raw(self, data):
        assert len(data) % 512 == 0
        self.tar.fileobj.write(data)
        self.tar.offset += len(data)

    def gnu_sparse(self, name, runs, realsize, data_runs, mode=0o644, mtime=T0):
        """An old-GNU sparse member (type 'S'), map in the header (at most 4 runs here)."""
        assert len(runs) <= 4 and len(name) < 100
        stored = b"".join(data_runs)
        h = bytearray(512)
        h[0:len(name)] = name.encode()
        h[100:108] = _octal(mode, 8)
        h[108:116] = _octal(0, 8)
        h[116:124] = _octal(0, 8)
        h[124:136] = _octal(len(stored), 12)
        h[136:148] = _octal(mtime, 12)
        h[156:157] = b"S"
        h[257:265] = b"ustar  \0"
        for i, (off, length) in enumerate(runs):
            base = 386 + 24 * i
            h[base:base + 12] = _octal(off, 12)
            h[base + 12:base + 24] = _octal(length, 12)
        h[482] = 0  # no extension blocks
        h[483:495] = _octal(realsize, 12)
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        pad = (-len(stored)) % 512
        self.raw(bytes(h) + stored + b"\0" * pad)

    def pax_sparse(self, name, runs, realsize, data_runs, mode=0o644, mtime=T0):
        """A PAX format 1.0 sparse member: the map leads the data, the real name is a PAX key."""
        parent, base = os.path.split(name)
        lines = [str(len(runs))] + [str(v) for run in runs for v in run]
        header = ("\n".join(lines) + "\n").encode()
        header += b"\0" * ((-len(header)) % 512)
        body = header + b"".join(data_runs)
        ti = self._info(os.path.join(parent, "GNUSparseFile.0", base), tarfile.REGTYPE, mode,
                        0, 0, mtime, None, None)
        ti.pax_headers.update({
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": name,
            "GNU.sparse.realsize": str(realsize),
        })
        ti.size = len(body)
        self._add(ti, body)

    def close(self):
        self.tar.close()
        return self.buf.getvalue()


def layer0():
    l = Layer()
    l.dir("./", mtime=T0)
    l.dir("./bin/")
    l.file("./bin/tool", "#!/bin/sh\necho tool\n", mode=0o4755)
    l.file("./bin/sgid-tool", "#!/bin/sh\necho sgid\n", mode=0o2755, gid=50)
    l.symlink("./bin/rel-link", "tool")
    l.symlink("./bin/abs-link", "/etc/hostname")
    l.symlink("./bin/dangling", "/does/not/exist", uid=1000, gid=1000, mtime=T0 + 5)
    l.hardlink("./bin/rel-link-hard", "./bin/rel-link")  # a hard link to a symlink
    l.dir("./etc/", mtime=T0 + 1, nsec=500000000)
    l.file("./etc/hostname", "layerfs-test\n")
    l.file("./etc/shadowed", "version 0\n")
    l.file("./etc/twice", "twice v0\n")
    l.file("./etc/remove-me", "this file is whited out in layer 1\n")
    l.file("./etc/empty", b"")
    l.dir("./dev/")
    l.device("./dev/null", "c", 1, 3, mode=0o666)
    l.device("./dev/sda1", "b", 8, 1, mode=0o660, gid=6)
    l.device("./dev/nvme-big", "b", 259, 300, mode=0o600)
    l.fifo("./dev/fifo")
    l.dir("./tmp/", mode=0o1777)
    l.dir("./modes/")
    l.file("./modes/all-bits", "all\n", mode=0o7777)
    l.file("./modes/none", "none\n", mode=0o000)
    l.file("./modes/sticky-file", "sticky\n", mode=0o1644)
    l.dir("./modes/setgid-dir/", mode=0o2775, gid=50)
    l.dir("./modes/private/", mode=0o700, uid=1000, gid=1000)
    l.file("./modes/private/secret", "secret\n", mode=0o600, uid=1000, gid=1000)
    l.dir("./owners/")
    l.file("./owners/u1000", "user\n", uid=1000, gid=1000)
    l.file("./owners/nobody", "nobody\n", uid=65534, gid=65534)
    l.file("./owners/big-ids", "big ids\n", uid=123456789, gid=987654321)
    l.dir("./hl/")
    l.file("./hl/orig", "hard link target\n", mode=0o640, gid=4)
    l.hardlink("./hl/link1", "./hl/orig")
    l.hardlink("./hl/link2", "./hl/link1")  # a chain: link2 names link1, itself a link
    l.file("./hl/doomed", "target whited out in layer 3\n")
    l.dir("./data/")
    l.file("./data/file2dir", "was a file\n")
    l.dir("./data/dir2file/")
    l.file("./data/dir2file/child1", "child1\n")
    l.dir("./data/dir2file/sub/")
    l.file("./data/dir2file/sub/child2", "child2\n")
    l.dir("./var/")
    l.file("./var/keep", "keep\n")
    l.dir("./var/cache/")
    l.dir("./var/cache/app/")
    l.file("./var/cache/app/cache1", "cache1\n")
    l.dir("./var/cache/app/sub/")
    l.file("./var/cache/app/sub/cache2", "cache2\n")
    l.dir("./opt/")
    l.dir("./opt/opaque/", mode=0o750)
    l.file("./opt/opaque/old1", "old1\n")
    l.file("./opt/opaque/old2", "old2\n")
    l.file("./opt/opaque/keep-name", "lower keep-name\n")
    l.dir("./opt/opaque/sub/")
    l.file("./opt/opaque/sub/old3", "old3\n")
    l.dir("./recreate/")
    l.file("./recreate/old-child", "old child\n")
    l.dir("./lib-dir/")
    l.file("./lib-dir/libfoo.so", "not really a library\n")
    l.symlink("./sym2dir", "etc")
    l.dir("./big/")
    l.file("./big/random.bin", pattern("random", 300 * 1024))
    l.dir("./times/")
    l.file("./times/ns", "ns\n", mtime=T0, nsec=123456789)
    l.file("./times/us", "us\n", mtime=T0 + 1, nsec=999999000)
    l.file("./times/early", "early\n", mtime=1)
    # 2250: past the 11 octal digits of ustar (a PAX mtime), before Go's UnixNano overflows (2262).
    l.file("./times/future", "future\n", mtime=8835955200, nsec=500000000)
    l.symlink("./times/link", "ns", mtime=T0 + 2, nsec=250000000)
    l.dir("./times/dir/", mtime=T0 + 3, nsec=750000000)
    l.dir("./xattr/", xattrs={"user.dir": "on a directory"})
    l.file("./xattr/file", "xattrs\n", xattrs={"user.comment": "hello"})
    l.file("./xattr/cap", "capability\n", mode=0o755,
           xattrs={"security.capability": CAP_NET_BIND})
    l.file("./xattr/binary", "binary value\n", xattrs={"user.bin": b"\xff\xfe\x00\x01"})
    l.dir("./many/")
    for i in range(300):
        l.file("./many/" + many_name(i), b"")
    return l.close()


def layer1(gnu_sparse_as_pax=False):
    l = Layer()
    # No entry for etc/: the lower layer's etc/ keeps its metadata.
    l.file("etc/shadowed", "version 1\n", mtime=T0 + 10)
    l.file("etc/twice", "twice v1\n", mtime=T0 + 10)
    l.whiteout("etc/remove-me")
    l.file("etc/l1-only", "removed again in layer 3\n")
    l.dir("data/", mtime=T0 + 11)
    l.dir("data/file2dir/", mode=0o751, mtime=T0 + 11)
    l.file("data/file2dir/inner", "inner\n")
    l.file("data/dir2file", "now a file\n", mode=0o600)
    l.dir("dup/")
    l.file("dup/same", "first\n")
    l.dir("dup/dir/", mode=0o700)
    l.file("dup/dir/child", "child\n")
    l.file("dup/same", "second, the one that shows\n", mode=0o640)
    l.dir("dup/dir/", mode=0o750, mtime=T0 + 12)
    l.file("hl2/a", "A-old\n")
    l.hardlink("hl2/b", "hl2/a")
    l.file("hl2/a", "A-new\n")
    l.dir("names/")
    l.file(LONG_PAX_NAME, "long PAX name\n")
    l.file(LONG_GNU_NAME, "long GNU name\n", fmt=tarfile.GNU_FORMAT)
    l.file(NAME_MAX_NAME, "255-byte name\n")
    l.file("names/with space.txt", "space\n")
    l.file("names/new\nline", "newline\n")
    l.file("names/ünïcödé-文件.txt", "utf-8\n")
    l.symlink("names/long-target", LONG_PAX_NAME[len("names/"):])
    l.symlink("names/gnu-long-target", LONG_GNU_NAME[len("names/"):], fmt=tarfile.GNU_FORMAT)
    sparse = l.pax_sparse if gnu_sparse_as_pax else l.gnu_sparse
    sparse("sparse/gnu", GNU_SPARSE_RUNS, GNU_SPARSE_SIZE, sparse_data("gnu", GNU_SPARSE_RUNS))
    l.pax_sparse("sparse/pax", PAX_SPARSE_RUNS, PAX_SPARSE_SIZE,
                 sparse_data("pax", PAX_SPARSE_RUNS))
    return l.close()


def layer2():
    l = Layer()
    l.file("./etc/shadowed", "version 2\n", mtime=T0 + 20)
    l.hardlink("etc/twice-link", "etc/twice")
    l.hardlink("./hl/upper-link", "./hl/orig")
    l.hardlink("hl/keeps-doomed", "hl/doomed")
    l.whiteout("var/cache/app")
    l.dir("opt/opaque/", mode=0o755, mtime=T0 + 21)
    l.opaque("opt/opaque")
    l.file("opt/opaque/new", "new in layer 2\n")
    l.file("opt/opaque/keep-name", "upper keep-name\n")
    l.whiteout("recreate")
    l.dir("recreate/", mode=0o700, mtime=T0 + 22)
    l.file("recreate/new-child", "new child\n")
    l.whiteout("never-existed")
    # A directory that needs many READDIR replies, merged across layers.
    for i in range(200, 400):
        l.file("many/" + many_name(i), b"", mode=0o600, mtime=T0 + 40)
    for i in range(50):
        l.whiteout("many/" + many_name(i))
    return l.close()


def layer3():
    l = Layer()
    l.dir("./", mode=0o755, mtime=T0 + 30, nsec=5)
    l.file("etc/shadowed", "version 3: the one that shows\n", mtime=T0 + 30)
    l.file("deep/implied/parents/file.txt", "parents implied\n")
    l.whiteout("hl/doomed")
    l.whiteout("etc/l1-only")
    l.file("app/hello.txt", "hi\n")
    l.hardlink("app/hello-link.txt", "app/hello.txt")
    return l.close()


def layer4():
    l = Layer()
    l.symlink("lib-dir", "bin")
    l.dir("sym2dir/", mode=0o755)
    l.file("sym2dir/file", "in a directory that replaced a symlink\n")
    return l.close()


HISTORY = [
    "base tree",
    "shadow, replace, long names, sparse",
    "whiteouts, opaque, hard links to lower",
    "implied parents, root entry",
    "dir <-> symlink",
]

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {
    "plain": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def dumps(obj):
    return json.dumps(obj, indent=None, separators=(",", ":")).encode()


def compress(data, how):
    if how == "plain":
        return data
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-10", "--no-progress"], input=data,
                              stdout=subprocess.PIPE, check=True).stdout
    raise ValueError(how)


def config_json(diff_ids, history=None):
    return dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": h}
                    for h in (history or ["layer %d" % i for i in range(len(diff_ids))])],
    })


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (T0, T0))


def archive_dir(src, dst):
    """Tars a directory's contents deterministically (sorted, fixed owner and mtime)."""
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                ti = tar.gettarinfo(full, os.path.relpath(full, src))
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mtime = T0
                ti.mode = 0o755 if ti.isdir() else 0o644
                if ti.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)


def write_docker(out, layers, config):
    d = os.path.join(out, "docker")
    names = []
    for data in layers:
        name = sha256(data) + ".tar"
        write(os.path.join(d, name), data)
        names.append(name)
    config_name = sha256(config) + ".json"
    write(os.path.join(d, config_name), config)
    manifest = [{"Config": config_name, "RepoTags": [REPO_TAG], "Layers": names}]
    write(os.path.join(d, "manifest.json"), dumps(manifest))
    archive_dir(d, os.path.join(out, "docker.tar"))


def write_oci(out, name, layers, config, how):
    d = os.path.join(out, name)

    def blob(data):
        digest = sha256(data)
        write(os.path.join(d, "blobs", "sha256", digest), data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    layer_descs = []
    for data in layers:
        layer_descs.append({"mediaType": MT_LAYER[how], **blob(compress(data, how))})
    manifest = dumps({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, **blob(config)},
        "layers": layer_descs,
    })
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MT_OCI_MANIFEST,
            **blob(manifest),
            "annotations": {"org.opencontainers.image.ref.name": REF_NAME},
        }],
    }
    write(os.path.join(d, "index.json"), dumps(index))
    write(os.path.join(d, "oci-layout"), dumps({"imageLayoutVersion": "1.0.0"}))
    return d


def layer_tars(gnu_sparse_as_pax=False):
    return [layer0(), layer1(gnu_sparse_as_pax), layer2(), layer3(), layer4()]


# What the demo image's shell layer links to busybox, so that `chroot MOUNTPOINT sh` works.
SHELL_COMMANDS = ["sh", "ls", "cat", "echo", "stat", "find", "grep", "head", "id", "mkdir", "rm",
                  "mv", "cp", "ln", "touch", "du", "df", "sed", "wc", "vi"]


def shell_layer(busybox):
    """A top layer with a static busybox as bin/busybox and bin/sh, bin/ls ... linked to it."""
    l = Layer()
    l.dir("bin/", mode=0o755)
    with open(busybox, "rb") as f:
        l.file("bin/busybox", f.read(), mode=0o755)
    for name in SHELL_COMMANDS:
        l.symlink("bin/" + name, "busybox")
    return l.close()


def make_image(out, busybox=None):
    """Writes every form of the image to OUT; with `busybox` (a static busybox binary), one more
    layer on top gives the image a shell."""
    layers = layer_tars()
    history = list(HISTORY)
    if busybox:
        layers.append(shell_layer(busybox))
        history.append("a shell: busybox")
    config = config_json([sha256(data) for data in layers], history)
    for sub in ("docker", "oci", "oci-plain", "oci-zstd"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    write_docker(out, layers, config)
    write_oci(out, "oci", layers, config, "gzip")
    write_oci(out, "oci-plain", layers, config, "plain")
    write_oci(out, "oci-zstd", layers, config, "zstd")
    archive_dir(os.path.join(out, "oci"), os.path.join(out, "oci.tar"))
    return out


def make_reference_layout(out):
    """The same image as an OCI layout umoci can unpack: Go's archive/tar (umoci 0.4.7) refuses
    old-GNU sparse members ("unknown typeflag 'S'"), so that one member is written as the
    equivalent PAX 1.0 sparse member (same name, metadata and content)."""
    return write_layout(out, "umoci-oci", layer_tars(gnu_sparse_as_pax=True))


def write_layout(out, name, layers, how="plain"):
    """An OCI layout OUT/NAME (ref name REF_NAME) of the given layer tars, bottom first."""
    config = config_json([sha256(data) for data in layers])
    shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    return write_oci(out, name, layers, config, how)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--shell"):
        sys.exit("usage: make_image.py OUT_DIR [--shell STATIC_BUSYBOX]")
    make_image(sys.argv[1], sys.argv[3] if len(sys.argv) == 4 else None)
