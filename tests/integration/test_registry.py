"""Images mounted from a real registry (docker://), started here on 127.0.0.1: every form pushed
with skopeo mounts as umoci's tree; blobs are fetched once into the cache; authentication, TLS
and the errors a user meets each give one clear line and mount nothing."""
import base64
import hashlib
import json
import os
import subprocess
import time
import urllib.request

import pytest

import make_image
from conftest import (assert_same_tree, cache_file_sizes, daemon_pids, is_mounted, layerfs_binary,
                      wait_for)
from registry import PASSWORD, USER, FaultProxy, Registry, TokenServer, blob_gets

PUSHED = {  # repository: what skopeo pushes, as a transport name
    "gzip": lambda img: "oci:%s:%s" % (img.form("oci"), make_image.REF_NAME),
    "plain": lambda img: "oci:%s:%s" % (img.form("oci-plain"), make_image.REF_NAME),
    "zstd": lambda img: "oci:%s:%s" % (img.form("oci-zstd"), make_image.REF_NAME),
    "docker": lambda img: "docker-archive:" + img.form("docker-archive"),
}


@pytest.fixture
def new_registry(tmp_path):
    """Starts registries of the test's own (Registry's options), stopped when it ends."""
    started = []

    def start(**options):
        r = Registry(tmp_path / ("registry-%d" % len(started)), **options).start()
        started.append(r)
        return r
    yield start
    for r in started:
        r.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, image):
    """A plain-HTTP registry holding the generated image in each form, as REPO:1."""
    r = Registry(tmp_path_factory.mktemp("registry")).start()
    for repo, source in PUSHED.items():
        r.push(source(image), repo + ":1")
    yield r
    r.stop()


def layerfs(*args, env=None):
    return subprocess.run([layerfs_binary(), *args], capture_output=True, text=True, timeout=120,
                          env=env)


def assert_one_error(r, *expected):
    """The command failed with one `layerfs: error:` line holding every expected phrase."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("layerfs: error: "), r.stderr
    for e in expected:
        assert e in lines[0], r.stderr
    assert PASSWORD not in r.stderr and PASSWORD not in r.stdout


@pytest.mark.parametrize("repo", sorted(PUSHED))
def test_mount_from_registry_matches_reference(registry, image, mounter, repo):
    name = registry.name(repo + ":1")
    before = len(registry.requests())
    m = mounter.mount(name, options=("--tls-verify=false",))
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()
    files = cache_file_sizes(m.cache)
    fetched = sorted(f for f in files if f.startswith("blobs/sha256/") and "." not in f)
    assert len(fetched) == 5, sorted(files)  # the five layer blobs, as stored in the registry
    assert not [f for f in files if f.endswith(".tar") and repo != "zstd"], sorted(files)
    assert not [f for f in files if ".tmp-" in f], sorted(files)
    gets = blob_gets(registry.requests()[before:])
    assert len(gets) == 6, gets  # the config and five layers, each once
    r = layerfs("inspect", "--json", "--cache", m.cache, "--tls-verify=false", name)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "registry"
    assert info["image"] == name
    assert len(info["layers"]) == 5


def test_second_mount_fetches_no_blob(registry, image, mounter):
    name = registry.name("gzip:1")
    first = mounter.mount(name, options=("--tls-verify=false",))
    assert not mounter.unmount(first)
    files = cache_file_sizes(first.cache)
    before = len(registry.requests())
    m = mounter.mount(name, cache=first.cache, options=("--tls-verify=false",))
    assert_same_tree(m.path, image.rootfs, image.implied)
    gets = blob_gets(registry.requests()[before:])
    assert len(gets) == 1, gets  # the config alone
    blobs = {f: s for f, s in cache_file_sizes(m.cache).items() if f.startswith(("blobs/", "index/"))}
    assert blobs == {f: s for f, s in files.items() if f.startswith(("blobs/", "index/"))}


def test_mount_by_digest(registry, image, mounter):
    digest = registry.manifest_digest("gzip:1")
    m = mounter.mount("docker://%s/gzip@%s" % (registry.host, digest),
                      options=("--tls-verify=false",))
    assert_same_tree(m.path, image.rootfs, image.implied)


def test_registry_errors_are_one_line_and_mount_nothing(registry, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = str(tmp_path / "cache")
    cases = [
        (registry.name("gzip:nosuchtag"), ["--tls-verify=false"],
         [registry.name("gzip"), "manifest nosuchtag", "HTTP 404"]),
        (registry.name("nosuchrepo:1"), ["--tls-verify=false"], ["nosuchrepo", "HTTP 404"]),
        ("docker://%s/gzip@sha256:%s" % (registry.host, "0" * 64), ["--tls-verify=false"],
         ["HTTP 404"]),
        (registry.name("gzip:1"), [], ["cannot reach the registry", "--tls-verify=false"]),
        ("docker://127.0.0.1:%d/gzip:1" % 1, ["--tls-verify=false"],
         ["cannot reach the registry", "127.0.0.1"]),
        ("docker://no-such-host.invalid/gzip:1", [], ["cannot reach the registry",
                                                      "no-such-host.invalid"]),
        ("docker://%s/Gzip:1" % registry.host, [], ["not a repository name"]),
        (registry.name("gzip:1"), ["--tls-verify=false", "--ref", "x"], ["--ref does not apply"]),
    ]
    for name, extra, expected in cases:
        r = layerfs("mount", name, str(mnt), "--cache", cache, *extra)
        assert_one_error(r, *expected)
        assert not is_mounted(str(mnt))


def test_changed_blob_in_registry_is_refused(tmp_path, image, new_registry):
    reg = new_registry()
    name = reg.push(PUSHED["gzip"](image), "gzip:1")
    with open(os.path.join(image.form("oci"), "index.json")) as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(image.form("oci"), "blobs/sha256",
                           manifest_digest.split(":")[1])) as f:
        layer = json.load(f)["layers"][2]["digest"]
    data = reg.blob_file(layer)
    with open(data, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    cache = str(tmp_path / "cache")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = layerfs("mount", name, str(mnt), "--cache", cache, "--tls-verify=false")
    assert_one_error(r, layer, "has digest")
    assert not is_mounted(str(mnt))
    assert not os.path.exists(os.path.join(cache, "blobs/sha256", layer.split(":")[1]))


def test_basic_auth(tmp_path, image, mounter, new_registry):
    reg = new_registry(htpasswd=True)
    name = reg.push(PUSHED["gzip"](image), "gzip:1")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(tmp_path / "run"))
    env.pop("REGISTRY_AUTH_FILE", None)
    cache = str(tmp_path / "cache")
    common = ["--cache", cache, "--tls-verify=false"]
    r = layerfs("mount", name, str(mnt), *common, env=env)
    assert_one_error(r, name.rsplit(":", 1)[0], "needs credentials", "--creds")
    r = layerfs("mount", name, str(mnt), *common, "--creds", USER + ":wrong", env=env)
    assert_one_error(r, "refused the credentials from --creds", "401")
    assert not is_mounted(str(mnt))

    m = mounter.mount(name, options=("--tls-verify=false", "--creds",
                                      "%s:%s" % (USER, PASSWORD)))
    assert_same_tree(m.path, image.rootfs, image.implied)
    assert not mounter.unmount(m)

    auth = {"auths": {reg.host: {"auth": base64.b64encode(
        ("%s:%s" % (USER, PASSWORD)).encode()).decode()}}}
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps(auth))
    r = layerfs("inspect", name, "--cache", cache, "--tls-verify=false", "--authfile",
                str(authfile), env=env)
    assert r.returncode == 0, r.stderr
    # podman's default auth file, found without an option
    (home / ".config/containers").mkdir(parents=True)
    (home / ".config/containers/auth.json").write_text(json.dumps(auth))
    r = layerfs("inspect", name, "--cache", cache, "--tls-verify=false", env=env)
    assert r.returncode == 0, r.stderr
    os.unlink(home / ".config/containers/auth.json")
    # docker's, and the password from it is never shown
    bad = {"auths": {reg.host: {"auth": base64.b64encode(b"tester:" + b"x" * 8).decode()}}}
    (home / ".docker").mkdir()
    (home / ".docker/config.json").write_text(json.dumps(bad))
    r = layerfs("inspect", name, "--cache", cache, "--tls-verify=false", env=env)
    assert_one_error(r, "refused the credentials from " + str(home / ".docker/config.json"))
    assert "xxxxxxxx" not in r.stderr


def test_tls_with_a_private_ca(tmp_path, image, mounter, new_registry):
    reg = new_registry(tls=True)
    name = reg.push(PUSHED["gzip"](image), "gzip:1")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = str(tmp_path / "cache")
    r = layerfs("mount", name, str(mnt), "--cache", cache)
    assert_one_error(r, "cannot reach the registry", "--cert-dir")
    assert not is_mounted(str(mnt))
    m = mounter.mount(name, options=("--cert-dir", reg.cert_dir))
    assert_same_tree(m.path, image.rootfs, image.implied)
    assert not mounter.unmount(m)
    r = layerfs("inspect", name, "--cache", cache, "--tls-verify=false")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("expired_first", [False, True])
def test_token_auth(tmp_path, image, mounter, expired_first, new_registry, request):
    token = TokenServer(tmp_path / "token")
    request.addfinalizer(token.stop)
    reg = new_registry(token=token)
    name = reg.push(PUSHED["gzip"](image), "gzip:1")
    issued = len(token.issued)
    token.expire_next = expired_first
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    creds = "%s:%s" % (USER, PASSWORD)
    m = mounter.mount(name, options=("--tls-verify=false", "--creds", creds))
    assert_same_tree(m.path, image.rootfs, image.implied)
    assert not mounter.unmount(m)
    mine = token.issued[issued:]
    # One token for the whole mount (an expired one is replaced once, when it is refused).
    assert len(mine) == (2 if expired_first else 1), mine
    assert all(user == USER and scope == "repository:gzip:pull" for user, scope in mine), mine
    # Anonymous: the token service grants nothing, so the registry refuses the manifest.
    r = layerfs("inspect", name, "--cache", str(tmp_path / "c2"), "--tls-verify=false",
                env=dict(os.environ, HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path)))
    assert_one_error(r, "needs credentials")
    r = layerfs("inspect", name, "--cache", str(tmp_path / "c2"), "--tls-verify=false",
                "--creds", USER + ":wrong")
    assert_one_error(r, "token service refused the credentials from --creds")
    # Publishing needs a token with push: asked for when the registry refuses the pull one.
    r = layerfs("index", "push", name, "--cache", m.cache, "--tls-verify=false", "--creds",
                creds)
    assert r.returncode == 0, r.stderr
    assert any("push" in scope for _, scope in token.issued), token.issued


def test_commands_take_a_registry_image(registry, image, mounter, tmp_path):
    name = registry.name("gzip:1")
    scratch = str(tmp_path / "scratch")
    m = mounter.mount(name, options=("--tls-verify=false", "--scratch", scratch), writable=True)
    with open(m.join("added-file"), "w") as f:
        f.write("from a registry image\n")
    assert not mounter.unmount(m)
    out = str(tmp_path / "committed")
    r = layerfs("commit", scratch, name, out, "--cache", m.cache, "--tls-verify=false")
    assert r.returncode == 0, r.stderr
    assert "the 5 layers of " + name in r.stdout
    r = layerfs("which", out, "/added-file", "--cache", m.cache)
    assert r.returncode == 0 and "layer 6 of 6" in r.stdout, (r.stdout, r.stderr)
    for args in (["ls", name, "/"], ["diff", name, "2"], ["which", name, "/etc"]):
        r = layerfs(*args, "--cache", m.cache, "--tls-verify=false")
        assert r.returncode == 0, (args, r.stderr)
        assert r.stdout, args


def registry_get(reg, path):
    req = urllib.request.Request("http://%s%s" % (reg.host, path), headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def test_index_push_publishes_the_indexes_beside_the_image(registry, tmp_path):
    name = registry.name("gzip:1")
    cache = str(tmp_path / "cache")
    for _ in range(2):  # a second push replaces the first's listing
        r = layerfs("index", "push", name, "--cache", cache, "--tls-verify=false")
        assert r.returncode == 0, r.stderr
        assert "the indexes of 5 of its 5 layers" in r.stdout, r.stdout
    subject = registry.manifest_digest("gzip:1")
    tag = "sha256-" + subject.split(":")[1]
    assert tag in r.stdout
    listing = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", registry.name("gzip:" + tag)],
        capture_output=True, check=True).stdout)
    ours = [m for m in listing["manifests"]
            if m.get("artifactType") == "application/vnd.layerfs.index.v1"]
    assert len(ours) == 1, listing
    artifact = json.loads(registry_get(registry, "/v2/gzip/manifests/" + ours[0]["digest"]))
    assert artifact["subject"]["digest"] == subject
    assert artifact["artifactType"] == "application/vnd.layerfs.index.v1"
    by_type = {}
    for d in artifact["layers"]:
        by_type.setdefault(d["mediaType"], []).append(d)
    indexes = by_type["application/vnd.layerfs.layer-index.v2"]
    chunks = by_type["application/vnd.layerfs.chunk-digests.v1"]
    assert len(indexes) == 5 and len(chunks) == 5
    for d in indexes:
        layer = d["annotations"]["io.layerfs.layer"]
        with open(os.path.join(cache, "index/sha256", layer.split(":")[1] + ".idx"), "rb") as f:
            assert registry_get(registry, "/v2/gzip/blobs/" + d["digest"]) == f.read()
    for d in chunks:
        size = int(d["annotations"]["io.layerfs.chunk-size"])
        with open(os.path.join(cache, "blobs/sha256",
                               d["annotations"]["io.layerfs.layer"].split(":")[1]), "rb") as f:
            blob = f.read()
        data = registry_get(registry, "/v2/gzip/blobs/" + d["digest"])
        expected = b"".join(hashlib.sha256(blob[i:i + size]).digest()
                            for i in range(0, len(blob), size))
        assert data == expected


def test_index_push_needs_a_registry_image(image, tmp_path):
    r = layerfs("index", "push", image.form("oci"), "--cache", str(tmp_path / "cache"))
    assert_one_error(r, "name a docker:// image")


def layer_blob_bytes(reg, requests, layers):
    """Bytes the registry sent of these layer blobs."""
    return sum(w for method, uri, w, status in requests
               if method == "GET" and any(l in uri for l in layers))


def assert_read_fails_with_eio_within(path, low, high):
    """Reading `path` fails with EIO after `low` to `high` seconds."""
    start = time.monotonic()
    with pytest.raises(OSError) as e:
        with open(path, "rb") as f:
            f.read()
    assert e.value.errno == 5
    assert low <= time.monotonic() - start < high


def pushed_with_index(reg, image, repo, cache):
    name = reg.push(PUSHED["gzip"](image), repo)
    # Small spans and chunks, so that the small image's layers have several of each.
    r = layerfs("index", "push", name, "--cache", cache, "--tls-verify=false", "--span", "64K",
                "--chunk-size", "64K")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(image.form("oci"), "index.json")) as f:
        manifest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(image.form("oci"), "blobs/sha256", manifest.split(":")[1])) as f:
        layers = [l["digest"] for l in json.load(f)["layers"]]
    return name, layers


def test_lazy_mount_fetches_only_what_is_read(registry, image, mounter, tmp_path):
    name, layers = pushed_with_index(registry, image, "lazy:1", str(tmp_path / "publisher"))
    before = len(registry.requests())
    m = mounter.mount(name, options=("--tls-verify=false", "--prefetch=none"))
    # Ready with the manifest, config and indexes: no byte of any layer blob.
    assert layer_blob_bytes(registry, registry.requests()[before:], layers) == 0
    r = layerfs("inspect", "--json", name, "--cache", m.cache, "--tls-verify=false")
    served = [l["served"] for l in json.loads(r.stdout)["layers"]]
    assert all(s.startswith("lazily") for s in served), served
    with open(m.join("big/random.bin"), "rb") as f:
        f.seek(100 * 1024)
        assert len(f.read(4096)) == 4096
    sent = layer_blob_bytes(registry, registry.requests()[before:], layers)
    bottom = os.path.getsize(registry.blob_file(layers[0]))
    assert 0 < sent < bottom, (sent, bottom)  # a chunk or two of the bottom layer, not all of it
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()
    # A second mount of the same cache fetches again only what the first did not.
    assert not mounter.unmount(m)
    before = len(registry.requests())
    m2 = mounter.mount(name, cache=m.cache, options=("--tls-verify=false", "--prefetch=none"))
    assert_same_tree(m2.path, image.rootfs, image.implied)
    assert layer_blob_bytes(registry, registry.requests()[before:], layers) == 0


def test_a_span_over_several_chunks_is_fetched_in_one_request(registry, image, mounter,
                                                              tmp_path):
    name = registry.push(PUSHED["gzip"](image), "coalesce:1")
    # Spans of 1 MiB over chunks of 64 KiB: decoding the span of big/random.bin (300 KiB that
    # do not compress) needs several consecutive chunks.
    r = layerfs("index", "push", name, "--cache", str(tmp_path / "publisher"),
                "--tls-verify=false", "--span", "1M", "--chunk-size", "64K")
    assert r.returncode == 0, r.stderr
    before = len(registry.requests())
    m = mounter.mount(name, options=("--tls-verify=false", "--prefetch=none"))
    with open(m.join("big/random.bin"), "rb") as f:
        got = f.read()
    with open(os.path.join(image.rootfs, "big/random.bin"), "rb") as f:
        assert got == f.read()
    ranges = [(uri, w) for method, uri, w, status in registry.requests()[before:]
              if method == "GET" and "/blobs/" in uri and status == 206]
    sent = sum(w for _, w in ranges)
    assert sent >= 300 * 1024, ranges
    # The span's compressed bytes in one request, not one per chunk or per piece the decoder
    # reads (128 KiB).
    assert max(w for _, w in ranges) >= 256 * 1024, ranges
    m.assert_healthy()


def test_lazy_mount_fetches_the_rest_in_the_background(registry, image, mounter, tmp_path):
    name, layers = pushed_with_index(registry, image, "lazy-bg:1", str(tmp_path / "publisher"))
    m = mounter.mount(name, options=("--tls-verify=false",))  # --prefetch=all, the default
    blobs = os.path.join(m.cache, "blobs/sha256")
    # Every layer ends up whole in the cache, checked against its digest, without a read.
    assert wait_for(lambda: all(os.path.exists(os.path.join(blobs, l.split(":")[1]))
                                for l in layers), 30.0), sorted(os.listdir(blobs))
    assert not [f for f in os.listdir(blobs) if f.endswith((".partial", ".present"))]
    for l in layers:
        with open(os.path.join(blobs, l.split(":")[1]), "rb") as f:
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == l
    assert_same_tree(m.path, image.rootfs, image.implied)
    m.assert_healthy()


def test_lazy_mount_refuses_a_changed_chunk_and_survives_the_registry_stopping(
        tmp_path, image, mounter, new_registry):
    reg = new_registry()
    name, layers = pushed_with_index(reg, image, "lazy:1", str(tmp_path / "publisher"))
    data = reg.blob_file(layers[0])
    with open(data, "r+b") as f:  # a byte of the bottom layer's first chunk
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0xFF]))
    m = mounter.mount(name, options=("--tls-verify=false", "--prefetch=none"))
    with pytest.raises(OSError) as e:
        with open(m.join("big/random.bin"), "rb") as f:
            f.read()
    assert e.value.errno == 5  # EIO
    assert "does not match its published digest" in m.log()
    assert os.listdir(m.path)  # the daemon still serves
    assert not mounter.unmount(m)

    with open(data, "r+b") as f:  # repaired; then the registry goes away mid-mount
        f.seek(10)
        f.write(byte)
    m = mounter.mount(name, cache=str(tmp_path / "cache2"),
                      options=("--tls-verify=false", "--prefetch=none", "--read-timeout=3"))
    with open(m.join("big/random.bin"), "rb") as f:
        first = f.read(4096)
    reg.stop()
    with open(m.join("big/random.bin"), "rb") as f:
        assert f.read(4096) == first  # fetched before: still served
    # A file of layer 4, none of which was read: EIO once --read-timeout has passed.
    assert_read_fails_with_eio_within(m.join("deep/implied/parents/file.txt"), 2.5, 20)
    assert "cannot" in m.log() or "Couldn't connect" in m.log() or "Failed to connect" in m.log()
    assert os.listdir(m.join("etc"))  # lookups do not wait for the registry
    reg.start()  # back: reads work again
    with open(m.join("deep/implied/parents/file.txt"), "rb") as f:
        assert f.read() == b"parents implied\n"
    assert_same_tree(m.path, image.rootfs, image.implied)


@pytest.mark.corpus
def test_corpus_lazy_python_start_fetches_a_fraction(corpus, tmp_path, mounter, new_registry):
    """The real image pushed, its indexes published: Python starts in a chroot of a lazy mount
    after fetching a small part of the layer blobs, and the whole tree equals umoci's."""
    reg = new_registry()
    with open(os.path.join(corpus, "oci", "index.json")) as f:
        entry = json.load(f)["manifests"][0]
    ref = entry["annotations"]["org.opencontainers.image.ref.name"]
    name = reg.push("oci:%s:%s" % (os.path.join(corpus, "oci"), ref), "corpus:1")
    r = layerfs("index", "push", name, "--cache", str(tmp_path / "publisher"),
                "--tls-verify=false")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(corpus, "oci", "blobs/sha256", entry["digest"].split(":")[1])) as f:
        layers = [(l["digest"], l["size"]) for l in json.load(f)["layers"]]
    total = sum(size for _, size in layers)
    before = len(reg.requests())
    m = mounter.mount(name, options=("--tls-verify=false", "--prefetch=none"))
    subprocess.run(["chroot", m.path, "python3", "-c", "import json"], check=True,
                   timeout=120)
    sent = layer_blob_bytes(reg, reg.requests()[before:], [d for d, _ in layers])
    assert sent <= 0.15 * total, (sent, total)
    assert_same_tree(m.path, os.path.join(corpus, "rootfs"))
    m.assert_healthy()


@pytest.mark.parametrize("lazy", [False, True])
def test_background_daemon_exits_after_unmount(registry, image, tmp_path, lazy):
    """A docker:// mount served by a background daemon (which forks after fetching) ends when
    it is unmounted."""
    if lazy:
        name, _ = pushed_with_index(registry, image, "bg:1", str(tmp_path / "publisher"))
    else:
        name = registry.name("gzip:1")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = layerfs("mount", name, str(mnt), "--cache", str(tmp_path / "cache"), "--tls-verify=false",
                "--read-only")
    assert r.returncode == 0, r.stderr
    assert is_mounted(str(mnt))
    pids = daemon_pids(str(mnt))
    assert len(pids) == 1, pids
    with open(os.path.join(str(mnt), "big/random.bin"), "rb") as f:
        assert len(f.read()) == 300 * 1024
    r = layerfs("umount", str(mnt))
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: not os.path.exists("/proc/%d" % pids[0]), 10.0), \
        "the daemon still runs after the unmount"


def test_busy_and_lying_registries(registry, image, mounter, tmp_path):
    # 503 and 429 answers are retried; the mount succeeds.
    proxy = FaultProxy(registry.host, faults={"/manifests/1": [503, 429], "/blobs/": [500]})
    try:
        m = mounter.mount("docker://%s/gzip:1" % proxy.host, options=("--tls-verify=false",))
        assert_same_tree(m.path, image.rootfs, image.implied)
        faulted = [s for s in proxy.seen if s[2] in (429, 500, 503)]
        assert len(faulted) == 3, proxy.seen
        assert not mounter.unmount(m)
    finally:
        proxy.stop()
    # A registry that keeps failing: one line, after the bounded retries.
    proxy = FaultProxy(registry.host, faults={"/manifests/": [503] * 10})
    try:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        r = layerfs("mount", "docker://%s/gzip:1" % proxy.host, str(mnt), "--cache",
                    str(tmp_path / "c1"), "--tls-verify=false")
        assert_one_error(r, "manifest 1", "HTTP 503")
        assert len([s for s in proxy.seen if s[2] == 503]) == 4, proxy.seen  # 1 + 3 retries
    finally:
        proxy.stop()
    # A manifest changed on the way: it no longer matches the digest the registry states.
    proxy = FaultProxy(registry.host, corrupt="/manifests/1")
    try:
        r = layerfs("mount", "docker://%s/gzip:1" % proxy.host, str(mnt), "--cache",
                    str(tmp_path / "c2"), "--tls-verify=false")
        assert_one_error(r, "does not match the digest the registry states")
        assert not is_mounted(str(mnt))
    finally:
        proxy.stop()


def test_lazy_chunks_damaged_in_the_cache_are_fetched_again(registry, image, mounter, tmp_path):
    name, layers = pushed_with_index(registry, image, "lazy-damage:1", str(tmp_path / "publisher"))
    m = mounter.mount(name, options=("--tls-verify=false", "--prefetch=none"))
    with open(m.join("big/random.bin"), "rb") as f:
        f.seek(100 * 1024)
        want = f.read(4096)
    assert not mounter.unmount(m)
    partial = os.path.join(m.cache, "blobs/sha256", layers[0].split(":")[1] + ".partial")
    assert os.path.exists(partial) and os.path.exists(partial[:-len(".partial")] + ".present")
    size = os.path.getsize(partial)
    with open(partial, "r+b") as f:  # the bytes lost, the record of them kept (as after a crash)
        f.truncate(0)
        f.truncate(size)
    before = len(registry.requests())
    m = mounter.mount(name, cache=m.cache, options=("--tls-verify=false", "--prefetch=none"))
    with open(m.join("big/random.bin"), "rb") as f:
        f.seek(100 * 1024)
        assert f.read(4096) == want
    assert layer_blob_bytes(registry, registry.requests()[before:], layers[:1]) > 0
    assert "in the cache is damaged; fetching it again" in m.log()
    m.assert_healthy()


def test_mount_push_index_makes_the_next_machine_lazy(registry, image, mounter, tmp_path):
    """A first machine mounts an image that has no index beside it with --push-index: it fetches
    the layers whole and publishes their indexes. A second machine (another cache) then mounts it
    lazily, fetching no layer byte before a read; a later --push-index mount pushes nothing."""
    name = registry.push(PUSHED["gzip"](image), "push-index:1")
    with open(os.path.join(image.form("oci"), "index.json")) as f:
        manifest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(image.form("oci"), "blobs/sha256", manifest.split(":")[1])) as f:
        layers = [l["digest"] for l in json.load(f)["layers"]]
    first = mounter.mount(name, cache=str(tmp_path / "machine-a"),
                          options=("--tls-verify=false", "--push-index"))
    assert_same_tree(first.path, image.rootfs, image.implied)
    assert "the indexes of 5 of its 5 layers" in first.log(), first.log()
    before = len(registry.requests())
    second = mounter.mount(name, cache=str(tmp_path / "machine-b"),
                           options=("--tls-verify=false", "--prefetch=none"))
    assert layer_blob_bytes(registry, registry.requests()[before:], layers) == 0
    assert_same_tree(second.path, image.rootfs, image.implied)
    assert 0 < layer_blob_bytes(registry, registry.requests()[before:], layers)
    second.assert_healthy()
    assert not mounter.unmount(first)
    before = len(registry.requests())
    again = mounter.mount(name, cache=str(tmp_path / "machine-a"),
                          options=("--tls-verify=false", "--push-index"))
    assert not [r for r in registry.requests()[before:] if r[0] in ("PUT", "POST")]
    assert "published as" not in again.log(), again.log()


def test_push_index_and_verify_need_a_registry_image(image, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for flag in ("--push-index", "--verify=full"):
        r = layerfs("mount", image.form("oci"), str(mnt), flag, "--cache", str(tmp_path / "c"))
        assert_one_error(r, "name a docker:// image")
        assert not is_mounted(str(mnt))


def test_verify_full_fetches_and_checks_every_layer_before_the_mount_is_ready(
        registry, image, mounter, tmp_path):
    name, layers = pushed_with_index(registry, image, "verify-full:1",
                                     str(tmp_path / "publisher"))
    m = mounter.mount(name, options=("--tls-verify=false", "--verify=full", "--prefetch=none"))
    blobs = os.path.join(m.cache, "blobs/sha256")
    for l in layers:  # whole, and what the manifest names, as soon as the mount is there
        with open(os.path.join(blobs, l.split(":")[1]), "rb") as f:
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == l
    assert not [f for f in os.listdir(blobs) if f.endswith((".partial", ".present"))]
    r = layerfs("inspect", "--json", name, "--cache", m.cache, "--tls-verify=false")
    served = [l["served"] for l in json.loads(r.stdout)["layers"]]
    assert not [s for s in served if s.startswith("lazily")], served
    assert_same_tree(m.path, image.rootfs, image.implied)


def test_reads_wait_for_a_registry_that_stops_answering_then_fail_until_it_answers(
        registry, image, mounter, tmp_path):
    name, layers = pushed_with_index(registry, image, "hang:1", str(tmp_path / "publisher"))
    proxy = FaultProxy(registry.host)
    try:
        m = mounter.mount(name.replace(registry.host, proxy.host),
                          options=("--tls-verify=false", "--prefetch=none", "--read-timeout=2"))
        with open(m.join("big/random.bin"), "rb") as f:
            first = f.read(4096)
        proxy.hang = "/blobs/"
        assert_read_fails_with_eio_within(m.join("deep/implied/parents/file.txt"), 1.5, 15)
        assert "no answer within 2 s" in m.log(), m.log()
        # Meanwhile what is here keeps serving, and lookups do not wait.
        start = time.monotonic()
        with open(m.join("big/random.bin"), "rb") as f:
            assert f.read(4096) == first
        assert os.listdir(m.join("etc"))
        os.stat(m.join("deep/implied/parents/file.txt"))
        assert time.monotonic() - start < 1.0
        proxy.hang = None  # answering again: so are reads
        with open(m.join("deep/implied/parents/file.txt"), "rb") as f:
            assert f.read() == b"parents implied\n"
        assert_same_tree(m.path, image.rootfs, image.implied)
    finally:
        proxy.stop()


def test_blob_requests_redirected_elsewhere_are_followed(registry, image, mounter, tmp_path):
    """Registries send blob GETs to object storage with a redirect: whole fetches and the Range
    requests of lazy reads follow it."""
    lazy, _ = pushed_with_index(registry, image, "redirect:1", str(tmp_path / "publisher"))
    proxy = FaultProxy(registry.host, redirect="/blobs/sha256:")
    try:
        for repo, options in (("gzip:1", ()), ("redirect:1", ("--prefetch=none",))):
            m = mounter.mount("docker://%s/%s" % (proxy.host, repo),
                              options=("--tls-verify=false",) + options)
            assert_same_tree(m.path, image.rootfs, image.implied)
            assert not mounter.unmount(m)
        redirected = [s for s in proxy.seen if s[2] == 307]
        assert len(redirected) >= 6, proxy.seen
    finally:
        proxy.stop()
    assert lazy
