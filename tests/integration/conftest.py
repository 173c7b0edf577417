"""Fixtures for the mount tests: the generated image and its umoci reference, and mounting.

Environment:
  LAYERFS         the layerfs binary (default: <checkout>/build/layerfs)
  LAYERFS_CORPUS  the real image built by tests/corpus/build-image.sh
                  (default: /var/tmp/corpus/debian-python); its tests are marked `corpus`
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_image  # noqa: E402
from tree_compare import compare_trees, summary  # noqa: E402

CHECKOUT = os.path.dirname(os.path.dirname(HERE))
LAYERFS = os.environ.get("LAYERFS", os.path.join(CHECKOUT, "build", "layerfs"))
CORPUS = os.environ.get("LAYERFS_CORPUS", "/var/tmp/corpus/debian-python")
MOUNT_TIMEOUT = 120.0  # seconds: a cold mount of the real image indexes ~360 MB

# The forms of the generated image, as a user names them on the command line.
FORMS = {
    "docker-manifest": "docker/manifest.json",
    "docker-dir": "docker",
    "docker-archive": "docker.tar",
    "oci": "oci",
    "oci-index-json": "oci/index.json",
    "oci-plain": "oci-plain",
    "oci-zstd": "oci-zstd",
    "oci-archive": "oci.tar",
}


def _links_asan(path):
    """gcc links AddressSanitizer's runtime as libasan.so; clang links it into the binary."""
    try:
        with open(path, "rb") as f:
            data = f.read()
            return b"libasan.so" in data or b"__asan_init" in data
    except OSError:
        return False


# Built with -Db_sanitize=address: LeakSanitizer runs when the daemon exits.
ASAN_BUILD = _links_asan(LAYERFS)


def pytest_configure(config):
    config.addinivalue_line("markers", "corpus: mounts the real image in $LAYERFS_CORPUS")
    config.addinivalue_line("markers", "load: many processes on one mount for a while "
                                       "($LAYERFS_LOAD_SECONDS)")
    config.addinivalue_line("markers", "rootless: runs as an unprivileged user or in a user "
                                       "namespace (tools/test runs these so)")


# --- mount table -------------------------------------------------------------------------------

def _unescape(field):
    out, i = bytearray(), 0
    raw = field.encode()
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mounts():
    """[(mount point, fs type, source)] from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            out.append((_unescape(fields[4]), rfields[0], _unescape(rfields[1])))
    return out


def is_mounted(path):
    path = os.path.realpath(path)
    return any(point == path for point, _, _ in mounts())


def fuse_mounts_under(prefix):
    prefix = os.path.realpath(prefix)
    return [p for p, t, _ in mounts()
            if t.startswith("fuse") and (p + "/").startswith(prefix + "/")]


# --- mounting ----------------------------------------------------------------------------------

def require_fuse():
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: mount tests need FUSE")


def layerfs_binary():
    if not (os.path.isfile(LAYERFS) and os.access(LAYERFS, os.X_OK)):
        pytest.fail("no layerfs binary at %s: build it or set LAYERFS" % LAYERFS, pytrace=False)
    return LAYERFS


def run_layerfs(*args, timeout=MOUNT_TIMEOUT):
    return subprocess.run([layerfs_binary(), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def daemon_pids(mountpoint):
    """Pids of layerfs processes serving `mountpoint` (found by their command line)."""
    want = os.fsencode(os.path.realpath(mountpoint))
    binary = os.fsencode(os.path.realpath(layerfs_binary()))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
            exe = os.readlink("/proc/%s/exe" % entry).encode()
        except OSError:
            continue
        if exe == binary and b"mount" in argv and any(
                os.path.realpath(a) == want for a in argv if a.startswith(b"/")):
            pids.append(int(entry))
    return pids


def wait_for(predicate, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def sanitizer_reports(pid):
    """What a sanitizer wrote about process `pid` to the files its log_path option names (a
    sanitized daemon's own stderr may be gone); empty when there is none."""
    text = ""
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"):
        for option in os.environ.get(var, "").split(":"):
            if option.startswith("log_path=") and pid and pid > 0:
                path = "%s.%d" % (option[len("log_path="):], pid)
                if os.path.exists(path):
                    with open(path, errors="replace") as f:
                        text += "\n%s report (%s):\n%s" % (var.split("_")[0], path, f.read())
    return text


class Mount:
    """A running layerfs mount: `proc` for a foreground (-f) mount started here, else the pid of
    the background daemon (-1 if none was found)."""

    def __init__(self, mountpoint, cache, log_path, proc=None, pid=None):
        self.path = mountpoint
        self.cache = cache
        self.log_path = log_path
        self.proc = proc
        self.pid = pid if pid is not None else proc.pid

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def log(self):
        text = ""
        if self.log_path is not None and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                text = f.read()
        return text + sanitizer_reports(self.pid)

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        if self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie is not serving
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def assert_healthy(self):
        """The daemon still runs, the mount answers, and it logged no error."""
        assert self.alive(), "layerfs exited; its log:\n" + self.log()
        assert is_mounted(self.path), "mount point no longer mounted"
        os.listdir(self.path)
        errors = [l for l in self.log().splitlines() if l.startswith("layerfs: error:")]
        assert not errors, "layerfs logged errors:\n" + "\n".join(errors)


class Mounter:
    """Mounts images under `base` and guarantees every one is unmounted at cleanup()."""

    def __init__(self, base):
        self.base = str(base)
        self.mounts = []
        self.caches = []
        self.count = 0

    def new_dir(self, name):
        self.count += 1
        path = os.path.join(self.base, "%s-%d" % (name, self.count))
        os.makedirs(path)
        if name == "cache":
            self.caches.append(path)
        return path

    def mount(self, image, cache=None, options=(), mountpoint=None, verbose=True, writable=False):
        """Mounts `image` in the foreground (-f, logging to a file); returns once the mount is in
        place, or fails the test. Read-only unless `writable` (then `options` may name a
        --scratch directory; without one the mount makes an ephemeral one)."""
        require_fuse()
        binary = layerfs_binary()
        mountpoint = mountpoint or self.new_dir("mnt")
        cache = cache or self.new_dir("cache")
        self.count += 1
        log_path = os.path.join(self.base, "layerfs-%d.log" % self.count)
        argv = [binary] + (["-v"] if verbose else []) + [
            "mount", str(image), mountpoint, "--cache", cache, "-f", *options]
        if not writable:
            argv.append("--read-only")
        with open(log_path, "w") as log:
            # A mount started from `nohup` would inherit an ignored SIGHUP (libfuse then leaves
            # it ignored); the tests send it and expect the default.
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    preexec_fn=lambda: signal.signal(signal.SIGHUP,
                                                                     signal.SIG_DFL))
        m = Mount(mountpoint, cache, log_path, proc=proc)
        self.mounts.append(m)
        ready = wait_for(lambda: is_mounted(mountpoint) or proc.poll() is not None, MOUNT_TIMEOUT)
        if not (ready and is_mounted(mountpoint)):
            pytest.fail("layerfs mount %s did not mount (exit %s):\n%s" % (
                image, proc.poll(), m.log()), pytrace=False)
        return m

    def unmount(self, m):
        """fusermount3 -u (retried while busy), lazy as a last resort; waits for the daemon."""
        problems = []
        if is_mounted(m.path):
            ok = wait_for(lambda: subprocess.run(["fusermount3", "-u", m.path],
                                                 stderr=subprocess.DEVNULL).returncode == 0
                          or not is_mounted(m.path), 5.0, interval=0.2)
            if not ok:
                problems.append("fusermount3 -u %s kept failing; unmounted lazily" % m.path)
                subprocess.run(["fusermount3", "-u", "-z", m.path], stderr=subprocess.DEVNULL)
        if not wait_for(lambda: not m.alive(), 10.0):
            problems.append("layerfs (pid %d) still ran after the unmount; killed" % m.pid)
            if m.pid > 0:
                os.kill(m.pid, signal.SIGKILL)
        if m.proc is not None:
            try:
                m.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append("layerfs (pid %d) did not exit" % m.pid)
        if is_mounted(m.path):
            problems.append("%s is still mounted" % m.path)
        if m in self.mounts:
            self.mounts.remove(m)
        return problems

    def cleanup(self):
        problems = []
        for m in list(self.mounts):
            problems += self.unmount(m)
        left = fuse_mounts_under(self.base)
        for path in left:
            subprocess.run(["fusermount3", "-u", "-z", path], stderr=subprocess.DEVNULL)
        if left:
            problems.append("FUSE mounts left behind: %s" % left)
        else:  # caches of the real image hold uncompressed layer copies: do not keep them
            for cache in self.caches:
                shutil.rmtree(cache, ignore_errors=True)
        return problems


@pytest.fixture
def mounter(tmp_path):
    m = Mounter(tmp_path)
    yield m
    problems = m.cleanup()
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="session", autouse=True)
def no_mounts_left_behind(tmp_path_factory):
    base = str(tmp_path_factory.getbasetemp())
    yield
    left = fuse_mounts_under(base)
    for path in left:
        subprocess.run(["fusermount3", "-u", "-z", path], stderr=subprocess.DEVNULL)
    assert not left, "FUSE mounts left behind: %s" % left


# --- the generated image and its reference -----------------------------------------------------

class Image:
    def __init__(self, root, rootfs, implied):
        self.root = root
        self.rootfs = rootfs
        self.implied = implied

    def form(self, name):
        return os.path.join(self.root, FORMS[name])

    def copy(self, form, dest):
        """A private copy of one form (to damage), at `dest`."""
        src = os.path.join(self.root, form)
        if os.path.isdir(src):
            shutil.copytree(src, dest)
        else:
            shutil.copyfile(src, dest)
        return dest


def umoci_unpack(layout_dir, bundle):
    """umoci's unpack of layout_dir:REF_NAME into bundle; returns bundle/rootfs."""
    if shutil.which("umoci") is None:
        pytest.fail("umoci is needed for the reference trees (apt-get install umoci)",
                    pytrace=False)
    r = subprocess.run(["umoci", "unpack", "--image", "%s:%s" % (layout_dir, make_image.REF_NAME),
                        bundle], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       preexec_fn=lambda: os.umask(0o022))
    if r.returncode != 0:
        pytest.fail("umoci unpack %s failed:\n%s" % (layout_dir, r.stdout), pytrace=False)
    return os.path.join(bundle, "rootfs")


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """The generated image in every form, and umoci's unpack of it."""
    root = str(tmp_path_factory.mktemp("image"))
    make_image.make_image(root)
    ref_root = str(tmp_path_factory.mktemp("reference"))
    layout = make_image.make_reference_layout(ref_root)
    rootfs = umoci_unpack(layout, os.path.join(ref_root, "bundle"))
    return Image(root, rootfs, make_image.IMPLIED_DIRS)


def cache_file_sizes(cache):
    """{relative path: size} of every file in a cache directory."""
    out = {}
    for root, _, files in os.walk(cache):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, cache)] = os.lstat(path).st_size
    return out


def assert_same_tree(actual, expected, skip_mtime=()):
    diffs = compare_trees(actual, expected, skip_mtime)
    assert not diffs, summary(diffs)


# --- the real image ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def corpus():
    if not os.path.isdir(CORPUS):
        pytest.skip("no real image at %s (build it with tests/corpus/build-image.sh, or set "
                    "LAYERFS_CORPUS)" % CORPUS)
    if not os.path.isdir(os.path.join(CORPUS, "rootfs")):
        pytest.fail("%s has no rootfs/ reference" % CORPUS, pytrace=False)
    return CORPUS
