"""Crashes: the daemon killed with SIGKILL at random points of a copy-up, a rename or a commit,
then mounted again on the same scratch directory, shows each file in its old or its new state,
never a torn one; a lazy unmount with files open ends the daemon cleanly.

LAYERFS_CRASH_ROUNDS (default 10) sets how many random kill points each case tries; the seed of
each round is in the failure message, and LAYERFS_CRASH_SEED replays one.
"""
import hashlib
import os
import random
import signal
import subprocess
import time

import pytest

import make_image
from conftest import is_mounted, layerfs_binary, run_layerfs, wait_for

ROUNDS = int(os.environ.get("LAYERFS_CRASH_ROUNDS", "10"))
SEED = os.environ.get("LAYERFS_CRASH_SEED")
HUGE = 24 << 20


def tree_files():
    files = {}
    for d in range(6):
        for i in range(12):
            files["tree/d%d/f%d" % (d, i)] = make_image.pattern("t%d-%d" % (d, i), 3000 + 997 * i)
    return files


@pytest.fixture(scope="module")
def crash_image(tmp_path_factory):
    l = make_image.Layer()
    l.dir("./")
    l.file("./huge.bin", make_image.pattern("huge", HUGE))
    l.file("./a", "file a\n")
    l.file("./b", "file b\n")
    l.dir("./tree/")
    for d in range(6):
        l.dir("./tree/d%d/" % d)
    for name, data in tree_files().items():
        l.file("./" + name, data)
    return make_image.write_layout(str(tmp_path_factory.mktemp("crash-image")), "oci",
                                   [l.close()])


def seeds():
    return [int(SEED)] if SEED else [random.randrange(1 << 30) for _ in range(ROUNDS)]


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree_state(root, top):
    """{relative path: sha256} of the files under root/top, or None if top is missing."""
    base = os.path.join(root, top)
    if not os.path.lexists(base):
        return None
    out = {}
    for dirpath, _, files in os.walk(base):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, base)] = digest(p)
    return out


def crash(mounter, m, action, delay):
    """Runs action(mount path) in a child, kills the daemon with SIGKILL after `delay` seconds,
    and takes the dead mount away."""
    child = subprocess.Popen(["sh", "-c", action], cwd=m.path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    time.sleep(delay)
    os.kill(m.pid, signal.SIGKILL)
    child.wait(timeout=60)
    m.proc.wait(timeout=10)
    subprocess.run(["fusermount3", "-u", "-z", m.path], stderr=subprocess.DEVNULL)
    assert wait_for(lambda: not is_mounted(m.path), 5)
    mounter.mounts.remove(m)


CASES = {
    "copy-up": "printf appended >> huge.bin",
    "rename-file": "mv a b",
    "rename-dir": "mv tree tree2",
    "rename-mixed": "mv tree/d1 tree/d1-moved && mv a tree/a && rm -rf tree/d2 && mv tree tree2",
}


def time_of(mounter, image, cache, scratch, action):
    """How long `action` takes in a fresh writable mount: kill points are drawn up to 1.5 times
    that, so that some rounds end before, some during and some after it."""
    m = mounter.mount(image, cache=cache, writable=True, options=("--scratch", scratch))
    start = time.monotonic()
    subprocess.run(["sh", "-c", action], cwd=m.path, check=True)
    took = time.monotonic() - start
    assert not mounter.unmount(m)
    return took


@pytest.mark.parametrize("case", sorted(CASES))
def test_kill_9_leaves_the_old_or_the_new_state(crash_image, mounter, tmp_path, case):
    action = CASES[case]
    huge = make_image.pattern("huge", HUGE)
    huge_digests = {hashlib.sha256(huge).hexdigest(): "old",
                    hashlib.sha256(huge + b"appended").hexdigest(): "new"}
    tree = {os.path.relpath(k, "tree"): hashlib.sha256(v).hexdigest()
            for k, v in tree_files().items()}
    cache = mounter.new_dir("cache")
    max_delay = 1.5 * time_of(mounter, crash_image, cache, str(tmp_path / "timing"), action)
    outcomes = set()
    for i, seed in enumerate(seeds()):
        rnd = random.Random(seed)
        scratch = str(tmp_path / ("scratch-%d" % i))
        m = mounter.mount(crash_image, cache=cache, writable=True, options=("--scratch", scratch))
        crash(mounter, m, action, rnd.uniform(0, max_delay))
        m = mounter.mount(crash_image, cache=cache, writable=True, options=("--scratch", scratch))
        where = "%s, seed %d" % (case, seed)
        if case == "copy-up":
            state = huge_digests.get(digest(m.join("huge.bin")))
            assert state, "huge.bin is torn (%s)" % where
        elif case == "rename-file":
            a = open(m.join("a")).read() if os.path.lexists(m.join("a")) else None
            b = open(m.join("b")).read()
            assert (a, b) in [("file a\n", "file b\n"), (None, "file a\n")], where
            state = "old" if a else "new"
        elif case == "rename-dir":
            old, new = tree_state(m.path, "tree"), tree_state(m.path, "tree2")
            assert (old, new) in [(tree, None), (None, tree)], "torn (%s): %s / %s" % (
                where, old and len(old), new and len(new))
            state = "old" if old else "new"
        else:  # each step is old or new, in order
            d1 = tree_state(m.path, "tree/d1") or tree_state(m.path, "tree2/d1")
            moved = tree_state(m.path, "tree/d1-moved") or tree_state(m.path, "tree2/d1-moved")
            d1_tree = {k[3:]: v for k, v in tree.items() if k.startswith("d1/")}
            assert (d1, moved) in [(d1_tree, None), (None, d1_tree)], "d1 torn (%s)" % where
            # rm -rf removes one file after another: any of them may be gone, none torn.
            d2 = tree_state(m.path, "tree/d2") or tree_state(m.path, "tree2/d2") or {}
            d2_tree = {k[3:]: v for k, v in tree.items() if k.startswith("d2/")}
            assert all(d2_tree.get(k) == v for k, v in d2.items()), "d2 torn (%s)" % where
            state = "d1 %s, d2 %s" % ("moved" if moved else "not moved",
                                      "kept" if d2 == d2_tree else "partly removed" if d2
                                      else "removed")
        outcomes.add(state)
        # The mount works on after the crash: the same change can be made again.
        r = subprocess.run(["sh", "-c", "touch after-crash && ls -R . >/dev/null"], cwd=m.path)
        assert r.returncode == 0, where
        m.assert_healthy()
        assert not mounter.unmount(m)
    print("%s: %d rounds, kill points up to %.0f ms, outcomes %s" % (
        case, len(seeds()), max_delay * 1000, sorted(outcomes)))


def test_kill_9_of_commit_leaves_no_image_or_a_whole_one(crash_image, mounter, tmp_path):
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(crash_image, writable=True, options=("--scratch", scratch))
    subprocess.run(["sh", "-c", "printf appended >> huge.bin && mv tree tree2 && rm b"],
                   cwd=m.path, check=True)
    cache = m.cache
    assert not mounter.unmount(m)
    want = hashlib.sha256(make_image.pattern("huge", HUGE) + b"appended").hexdigest()
    binary = layerfs_binary()
    start = time.monotonic()
    r = run_layerfs("commit", scratch, crash_image, str(tmp_path / "out-first"), "--cache", cache,
                    timeout=600)
    assert r.returncode == 0, r.stderr
    max_delay = 1.5 * (time.monotonic() - start)
    whole = 0
    for i, seed in enumerate(seeds()):
        rnd = random.Random(seed)
        out = str(tmp_path / ("out-%d" % i))
        p = subprocess.Popen([binary, "commit", scratch, crash_image, out, "--cache", cache],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0, max_delay))
        p.kill()
        p.wait()
        if os.path.exists(out):
            whole += 1
        else:  # the same commit again clears what the killed one left, and writes OUT
            r = run_layerfs("commit", scratch, crash_image, out, "--cache", cache, timeout=600)
            assert r.returncode == 0, r.stderr
        # OUT is whole: it mounts and shows the changes
        m = mounter.mount(out, cache=cache)
        assert digest(m.join("huge.bin")) == want, "seed %d" % seed
        assert not os.path.lexists(m.join("b")) and os.path.isdir(m.join("tree2"))
        assert not mounter.unmount(m)
        leftovers = [n for n in os.listdir(str(tmp_path)) if ".tmp-" in n or ".layer-" in n]
        assert not leftovers, "seed %d" % seed
    print("commit: %d rounds, kill points up to %.0f ms, %d whole images" % (
        len(seeds()), max_delay * 1000, whole))
    # The scratch directory is untouched by the killed commits, and a commit now succeeds.
    out = str(tmp_path / "out-final")
    r = run_layerfs("commit", scratch, crash_image, out, "--cache", cache, timeout=600)
    assert r.returncode == 0, r.stderr
    m = mounter.mount(out, cache=cache)
    assert digest(m.join("huge.bin")) == want
    assert not mounter.unmount(m)


def test_lazy_unmount_with_open_files_ends_the_daemon_cleanly(crash_image, mounter):
    m = mounter.mount(crash_image, writable=True)
    reader = open(m.join("a"), "rb")
    writer = open(m.join("new"), "wb")
    cwd = os.open(m.join("tree"), os.O_RDONLY | os.O_DIRECTORY)
    r = subprocess.run(["fusermount3", "-u", "-z", m.path], stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    assert not is_mounted(m.path)
    # The open files still work until closed; then the daemon ends on its own.
    assert reader.read() == b"file a\n"
    writer.write(b"still writing\n")
    writer.flush()
    assert os.listdir(cwd)
    assert m.alive(), "the daemon ended while files were open"
    reader.close()
    writer.close()
    os.close(cwd)
    assert wait_for(lambda: not m.alive(), 10), "the daemon did not end after the last close"
    assert m.proc.returncode == 0, m.log()
    assert "error" not in m.log().lower(), m.log()
    mounter.mounts.remove(m)
