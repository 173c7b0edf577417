"""Load: many processes reading and writing one writable mount at once, every result checked.

32 processes each run fsx-style random I/O (writes, truncates, reads, mmap reads, appends,
renames, fsync) on a file of their own, half of them files of the image (copied up under load),
checking every read against a model of the file; beside them, a `tar -x` + `diff` + `rm -rf` loop,
a `find` over untouched parts of the image (whose listing must never change), and readers of a
layer file. Then the mount is unmounted and mounted again on the same scratch directory, and each
file must hold exactly its model.

LAYERFS_LOAD_SECONDS (default 20) sets how long the load runs; tools/test runs it longer under
the sanitizers.
"""
import hashlib
import mmap
import multiprocessing
import os
import random
import subprocess
import tarfile
import time

import pytest

import make_image

SECONDS = float(os.environ.get("LAYERFS_LOAD_SECONDS", "20"))
WORKERS = int(os.environ.get("LAYERFS_LOAD_WORKERS", "32"))
MAX_SIZE = 1 << 20

pytestmark = pytest.mark.load


def fsx(root, name, seed, deadline, results):
    """Random I/O on root/name against a model; puts (name, sha256, size, ops, error)."""
    rnd = random.Random(seed)
    path = os.path.join(root, name)
    moved = path + ".moved"
    ops = 0
    try:
        with open(path, "rb") as f:
            model = bytearray(f.read())
        fd = os.open(path, os.O_RDWR)
        while time.monotonic() < deadline:
            ops += 1
            op = rnd.random()
            if op < 0.35:  # write, maybe past the end (a hole is zeros)
                off = rnd.randrange(0, min(len(model) + 65536, MAX_SIZE))
                data = rnd.randbytes(rnd.randrange(1, 65536))
                assert os.pwrite(fd, data, off) == len(data)
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off:off + len(data)] = data
            elif op < 0.45:  # truncate, up or down
                size = rnd.randrange(0, MAX_SIZE)
                os.ftruncate(fd, size)
                if size < len(model):
                    del model[size:]
                else:
                    model.extend(bytes(size - len(model)))
            elif op < 0.75:  # read a range
                off = rnd.randrange(0, len(model) + 1)
                n = rnd.randrange(0, 131072)
                got = os.pread(fd, n, off)
                if got != bytes(model[off:off + n]):
                    raise AssertionError("%s: read of %d at %d differs (op %d)" % (name, n, off,
                                                                                   ops))
            elif op < 0.80:
                os.fsync(fd)
            elif op < 0.85 and model:  # mmap read of the whole file
                with mmap.mmap(fd, len(model), prot=mmap.PROT_READ) as m:
                    if m[:] != bytes(model):
                        raise AssertionError("%s: mmap read differs (op %d)" % (name, ops))
            elif op < 0.90:  # append through a second descriptor
                data = rnd.randbytes(rnd.randrange(1, 4096))
                if len(model) + len(data) <= MAX_SIZE:
                    afd = os.open(path, os.O_WRONLY | os.O_APPEND)
                    os.write(afd, data)
                    os.close(afd)
                    model.extend(data)
            elif op < 0.95:  # rename away and back, with the file open
                os.rename(path, moved)
                if os.path.lexists(path):
                    raise AssertionError("%s: still there after a rename" % name)
                os.rename(moved, path)
            else:  # read everything through a new descriptor
                with open(path, "rb") as f:
                    if f.read() != bytes(model):
                        raise AssertionError("%s: whole-file read differs (op %d)" % (name, ops))
            if os.fstat(fd).st_size != len(model):
                raise AssertionError("%s: size %d, expected %d (op %d)" % (
                    name, os.fstat(fd).st_size, len(model), ops))
        os.close(fd)
        results.put((name, hashlib.sha256(model).hexdigest(), len(model), ops, None))
    except Exception as e:  # noqa: BLE001: reported to the test
        results.put((name, None, None, ops, "%s: %r" % (name, e)))


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def tar_loop(root, tarball, reference, deadline, results):
    """tar -x into the mount, compare with the same tar extracted outside, rm -rf; repeat."""
    rounds, error = 0, None
    try:
        while time.monotonic() < deadline:
            rounds += 1
            dest = os.path.join(root, "load-tar")
            os.mkdir(dest)
            r = run(["tar", "-xf", tarball, "-C", dest])
            assert r.returncode == 0, "tar -x: " + r.stdout
            r = run(["diff", "-r", "--no-dereference", reference, dest])
            assert r.returncode == 0, "diff -r after tar -x, round %d:\n%s" % (rounds, r.stdout)
            r = run(["rm", "-rf", dest])
            assert r.returncode == 0 and not os.path.lexists(dest), "rm -rf: " + r.stdout
    except Exception as e:  # noqa: BLE001
        error = "tar loop: %s" % e
    results.put(("tar", None, None, rounds, error))


def find_loop(root, expected, deadline, results):
    rounds, error = 0, None
    try:
        while time.monotonic() < deadline:
            rounds += 1
            r = run(["find", "bin", "etc", "modes", "owners", "xattr", "var", "opt"], cwd=root)
            assert r.returncode == 0, "find: " + r.stdout
            got = sorted(r.stdout.split("\n"))
            assert got == expected, "find listed %d entries, expected %d (round %d)" % (
                len(got), len(expected), rounds)
    except Exception as e:  # noqa: BLE001
        error = "find loop: %s" % e
    results.put(("find", None, None, rounds, error))


def read_loop(root, deadline, results):
    rounds, error = 0, None
    want = make_image.pattern("random", 300 * 1024)
    try:
        while time.monotonic() < deadline:
            rounds += 1
            with open(os.path.join(root, "big/random.bin"), "rb") as f:
                assert f.read() == want, "big/random.bin differs (round %d)" % rounds
    except Exception as e:  # noqa: BLE001
        error = "read loop: %s" % e
    results.put(("read", None, None, rounds, error))


def make_tree(top):
    """A small source tree, as a package would unpack: dirs, files of all sizes, links."""
    rnd = random.Random(7)
    for d in range(8):
        sub = os.path.join(top, "d%d" % d, "sub")
        os.makedirs(sub)
        for i in range(20):
            with open(os.path.join(top, "d%d" % d, "f%d" % i), "wb") as f:
                f.write(rnd.randbytes(rnd.choice([0, 10, 4096, 70000])))
        os.symlink("../d0/f1", os.path.join(sub, "link"))
        os.link(os.path.join(top, "d%d" % d, "f2"), os.path.join(sub, "hard"))


def test_many_readers_and_writers_at_once(image, mounter, tmp_path):
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(image.form("oci"), writable=True, options=("--scratch", scratch))
    expected = sorted(run(["find", "bin", "etc", "modes", "owners", "xattr", "var", "opt"],
                          cwd=m.path).stdout.split("\n"))
    source = str(tmp_path / "source")
    make_tree(source)
    tarball = str(tmp_path / "tree.tar")
    with tarfile.open(tarball, "w") as t:
        t.add(source, arcname=".")
    os.makedirs(m.join("load"))
    image_files = sorted(os.listdir(m.join("many")))
    names = []
    for i in range(WORKERS):
        if i % 2 == 0:  # a file of the image, copied up under load
            names.append("many/" + image_files[i])
        else:
            names.append("load/w%d" % i)
            open(m.join(names[-1]), "wb").close()

    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    deadline = time.monotonic() + SECONDS
    procs = [ctx.Process(target=fsx, args=(m.path, n, i, deadline, results))
             for i, n in enumerate(names)]
    procs += [ctx.Process(target=tar_loop, args=(m.path, tarball, source, deadline, results)),
              ctx.Process(target=find_loop, args=(m.path, expected, deadline, results)),
              ctx.Process(target=read_loop, args=(m.path, deadline, results))]
    for p in procs:
        p.start()
    got = [results.get(timeout=SECONDS + 300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [g[4] for g in got if g[4]]
    assert not errors, "\n".join(errors)
    rounds = {g[0]: g[3] for g in got}
    assert all(rounds[k] > 0 for k in ("tar", "find", "read")), rounds
    assert min(g[3] for g in got if g[1] is not None) >= 10, rounds
    print("load for %.0f s: %d fsx operations by %d processes; rounds: tar %d, find %d, read %d"
          % (SECONDS, sum(g[3] for g in got if g[1] is not None), WORKERS, rounds["tar"],
             rounds["find"], rounds["read"]))
    m.assert_healthy()
    assert not mounter.unmount(m)

    # Everything written is in the scratch directory: a new mount shows each file's model.
    m = mounter.mount(image.form("oci"), cache=m.cache, writable=True,
                      options=("--scratch", scratch))
    for name, digest, size, _, _ in got:
        if digest is None:
            continue
        with open(m.join(name), "rb") as f:
            data = f.read()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == digest, name
    assert not os.path.lexists(m.join("load-tar"))
    m.assert_healthy()
