"""`layerfs inspect`, `which`, `ls` and `diff` on the generated image (make_image.py) and the real
one: text and JSON output, the numbers checked against a model of the merged view built here from
the layer tars with Python's tarfile, and errors for bad input."""
import json
import os
import subprocess

import pytest

import make_image
from conftest import layerfs_binary, Mounter


# --- a model of the merged view, from the layer tars alone ---------------------------------------

def norm(name):
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return "/".join(parts)


def drop_under(path, view):
    for p in [p for p in view if p.startswith(path + "/")]:
        del view[p]


class Model:
    """Applies layer tars bottom first as an unpacker would, and remembers, per layer, the regular
    files its tar leaves in place (the last entry of each path; a hard link is its target's data).

    view: path -> ("dir", None) | ("file", key) | ("other", None); key = (layer, member number)."""

    def __init__(self, tar_paths):
        self.view = {}
        self.sizes = {}
        self.layer_files = []
        for layer, tar_path in enumerate(tar_paths):
            self._apply(layer, tar_path)

    def _apply(self, layer, tar_path):
        import tarfile
        with tarfile.open(tar_path) as t:
            members = t.getmembers()
        below = self.view
        own, deletions, opaque = {}, [], []
        for i, m in enumerate(members):
            p = norm(m.name)
            if not p:
                continue
            parent, _, base = p.rpartition("/")
            if base == ".wh..wh..opq":
                opaque.append(parent)
                continue
            if base.startswith(".wh."):
                deletions.append((parent + "/" if parent else "") + base[4:])
                continue
            for k in range(1, p.count("/") + 1):  # a path through a non-directory replaces it
                anc = "/".join(p.split("/")[:k])
                if anc in own and own[anc][0] != "dir":
                    own[anc] = ("dir", None)
            if m.isdir():
                own[p] = ("dir", None)
                continue
            if p in own and own[p][0] == "dir":
                drop_under(p, own)
            if m.isreg():
                self.sizes[(layer, i)] = m.size
                own[p] = ("file", (layer, i))
            elif m.islnk():
                target = norm(m.linkname)
                src = own.get(target) if target in own else below.get(target)
                own[p] = src if src and src[0] == "file" else ("other", None)
            else:
                own[p] = ("other", None)
        self.layer_files.append({v[1] for v in own.values() if v[0] == "file" and v[1][0] == layer})
        view = dict(below)
        for d in opaque:
            drop_under(d, view) if d else view.clear()
        for p in deletions:
            view.pop(p, None)
            drop_under(p, view)
        for p, v in own.items():
            parts = p.split("/")
            for k in range(1, len(parts)):
                anc = "/".join(parts[:k])
                if view.get(anc, ("x",))[0] != "dir":
                    view[anc] = ("dir", None)
            if v[0] != "dir":
                drop_under(p, view)
            view[p] = v
        self.view = view

    def visible_keys(self):
        return {v[1] for v in self.view.values() if v[0] == "file"}

    def wasted(self):
        visible = self.visible_keys()
        return [sum(self.sizes[k] for k in keys if k not in visible) for keys in self.layer_files]

    def file_bytes(self):
        return [sum(self.sizes[k] for k in keys) for keys in self.layer_files]


def docker_layers(image_dir):
    """The uncompressed layer tars of a docker-save directory, bottom first."""
    with open(os.path.join(image_dir, "manifest.json")) as f:
        return [os.path.join(image_dir, p) for p in json.load(f)[0]["Layers"]]


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """The generated image (no umoci reference needed here) and one cache for all its commands."""
    root = str(tmp_path_factory.mktemp("inspect-image"))
    make_image.make_image(root)
    return {"root": root, "cache": os.path.join(root, "cache"),
            "oci": os.path.join(root, "oci"), "oci-plain": os.path.join(root, "oci-plain"),
            "docker": os.path.join(root, "docker")}


def run(*args, columns=None, timeout=300):
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([layerfs_binary(), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, env=env)


def ok(*args, columns=None):
    r = run(*args, columns=columns)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress line when stderr is not a terminal
    return r.stdout


def js(*args):
    return json.loads(ok(*args, "--json"))


def one_error(r, code=1, mentions=()):
    lines = r.stderr.splitlines()
    assert r.returncode == code, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("layerfs: error: "), r.stderr
    for word in mentions:
        assert word in lines[0], "%r not in: %s" % (word, lines[0])
    assert r.stdout == ""


# --- inspect -------------------------------------------------------------------------------------

def test_inspect_json_matches_the_layers_and_the_model(gen):
    out = js("inspect", "--cache", gen["cache"], gen["oci"])
    model = Model(docker_layers(gen["docker"]))
    layers = out["layers"]
    assert [l["number"] for l in layers] == [1, 2, 3, 4, 5]
    assert [l["created_by"] for l in layers] == make_image.HISTORY
    assert all(l["media_type"] == make_image.MT_LAYER["gzip"] for l in layers)
    assert all(l["compression"] == "gzip" for l in layers)
    for l, tar in zip(layers, docker_layers(gen["docker"])):
        assert l["uncompressed_size"] == os.path.getsize(tar)
        assert l["diff_id"] == "sha256:" + os.path.basename(tar)[:-4]
        blob = os.path.join(gen["oci"], "blobs", "sha256", l["digest"].split(":")[1])
        assert l["size"] == os.path.getsize(blob)
    assert [l["wasted_bytes"] for l in layers] == model.wasted()
    assert [l["file_bytes"] for l in layers] == model.file_bytes()
    assert out["total"]["wasted_bytes"] == sum(model.wasted())
    assert out["total"]["visible_paths"] == len(model.view)
    # Layer 3: 50 whiteouts in many/, of var/cache/app, recreate and never-existed; two opaque
    # directories (opt/opaque, and recreate: deleted and re-created in one layer).
    assert layers[2]["whiteouts"] == 52 and layers[2]["opaque_dirs"] == 2
    assert layers[0]["hardlinks"] == 3 and layers[0]["whiteouts"] == 0
    assert layers[1]["dropped"] >= 2  # dup/same, dup/dir, hl2/a


def test_inspect_table_fits_the_terminal(gen):
    wide = ok("inspect", "--cache", gen["cache"], gen["oci"], columns=200)
    lines = wide.splitlines()
    assert "5 layers" in lines[0]
    header = lines[2].split()
    assert header[:4] == ["#", "DIGEST", "TYPE", "SIZE"] and "WASTED" in header
    rows = lines[3:]
    assert len(rows) == 5
    for n, (row, history) in enumerate(zip(rows, make_image.HISTORY), 1):
        assert row.split()[0] == str(n)
        assert row.endswith(history)
    narrow = ok("inspect", "--cache", gen["cache"], gen["oci"], columns=60)
    assert all(len(l) <= 60 for l in narrow.splitlines()[2:]), narrow
    assert "WASTED" in narrow and "…" in narrow
    exact = ok("inspect", "-b", "--cache", gen["cache"], gen["oci-plain"], columns=200)
    model = Model(docker_layers(gen["docker"]))
    first = exact.splitlines()[3].split()
    assert str(model.wasted()[0]) in first


# --- which ---------------------------------------------------------------------------------------

def test_which_shadowed_three_times(gen):
    out = js("which", "--cache", gen["cache"], gen["oci"], "/etc/shadowed")
    assert out["path"] == "/etc/shadowed" and out["type"] == "file" and out["layer"] == 4
    assert [(l["number"], l["role"]) for l in out["layers"]] == [
        (4, "serves"), (3, "shadowed"), (2, "shadowed"), (1, "shadowed")]
    assert all(l["by"] == 4 for l in out["layers"][1:])
    assert out["layers"][0]["entry"] == {"type": "file", "size": 30, "mode": 0o644, "uid": 0,
                                         "gid": 0}
    text = ok("which", "--cache", gen["cache"], gen["oci"], "etc/shadowed", columns=100)
    assert text.startswith("/etc/shadowed: file, from layer 4 of 5")
    assert "hidden by layer 4" in text


def test_which_directory_merges_and_opaque(gen):
    out = js("which", "--cache", gen["cache"], gen["oci"], "/many")
    assert [(l["number"], l["role"]) for l in out["layers"]] == [(3, "serves"), (1, "merged")]
    assert out["metadata_layer"] == 1  # layer 3 only implies many/
    out = js("which", "--cache", gen["cache"], gen["oci"], "/opt/opaque/keep-name")
    assert [(l["number"], l["role"]) for l in out["layers"]] == [(3, "serves"), (1, "shadowed")]


def test_which_missing_or_deleted_path_is_one_error(gen):
    r = run("which", "--cache", gen["cache"], gen["oci"], "/etc/remove-me")
    one_error(r, mentions=["/etc/remove-me", "no such path", "layer 2 deletes /etc/remove-me"])
    r = run("which", "--cache", gen["cache"], gen["oci"], "/var/cache/app/sub/cache2")
    one_error(r, mentions=["layer 3 deletes /var/cache/app"])
    r = run("which", "--cache", gen["cache"], gen["oci"], "/no/such/thing")
    one_error(r, mentions=["/no/such/thing: no such path in the merged view"])
    r = run("which", "--cache", gen["cache"], gen["oci"], "../../etc")
    one_error(r, mentions=["leaves the image root"])


# --- ls ------------------------------------------------------------------------------------------

def test_ls_recursive_json_is_the_merged_view(gen):
    out = js("ls", "-R", "--cache", gen["cache"], gen["oci"])
    model = Model(docker_layers(gen["docker"]))
    paths = [e["path"] for e in out["entries"]]
    assert sorted(paths) == sorted("/" + p for p in model.view)
    assert len(paths) == len(set(paths))
    by_path = {e["path"]: e for e in out["entries"]}
    assert by_path["/etc/shadowed"]["layer"] == 4 and by_path["/etc/shadowed"]["size"] == 30
    assert by_path["/bin/tool"]["mode"] == 0o4755
    assert by_path["/bin/rel-link"]["type"] == "symlink"
    assert by_path["/bin/rel-link"]["target"] == "tool"
    assert by_path["/dev/sda1"]["rdev"] == {"major": 8, "minor": 1}
    assert by_path["/hl/orig"]["nlink"] == 4
    for p, e in by_path.items():
        kind = model.view[p[1:]][0]
        assert (e["type"] == "dir") == (kind == "dir"), p


def test_ls_text_and_long_format(gen):
    out = ok("ls", "--cache", gen["cache"], gen["oci"], columns=80)
    names = out.split()
    listed = [e["name"] for e in js("ls", "--cache", gen["cache"], gen["oci"])["entries"]]
    assert listed == sorted(listed) and sorted(names) == listed and "many" in names
    # Filled down the columns, as ls -C does: the first column holds the first names.
    assert [l.split()[0] for l in out.splitlines()] == listed[:len(out.splitlines())]
    assert all(len(l) <= 80 for l in out.splitlines())
    assert len(out.splitlines()) > 1  # columns, not one line
    long = ok("ls", "-l", "--cache", gen["cache"], gen["oci"], "/etc")
    lines = long.splitlines()
    assert [l.split()[-1] for l in lines] == ["empty", "hostname", "shadowed", "twice",
                                              "twice-link"]
    shadowed = next(l for l in lines if l.endswith(" shadowed")).split()
    assert shadowed[0] == "-rw-r--r--" and shadowed[4] == "30" and shadowed[7] == "4"
    one = ok("ls", "-l", "--cache", gen["cache"], gen["oci"], "/bin/rel-link")
    assert one.startswith("lrwxrwxrwx") and one.rstrip().endswith("/bin/rel-link -> tool")
    rec = ok("ls", "-R", "--cache", gen["cache"], gen["oci"], "/data")
    assert rec.splitlines()[0] == "/data:" and "\n/data/file2dir:\ninner\n" in rec


def test_ls_missing_path_is_one_error(gen):
    one_error(run("ls", "--cache", gen["cache"], gen["oci"], "/etc/remove-me"),
              mentions=["/etc/remove-me: no such path in the merged view"])


# --- diff ----------------------------------------------------------------------------------------

def test_diff_json_of_layer_2(gen):
    out = js("diff", "--cache", gen["cache"], gen["oci"], "2")
    assert out["layer"] == 2 and out["created_by"] == make_image.HISTORY[1]
    added = {a["path"]: a["type"] for a in out["added"]}
    changed = {c["path"]: c for c in out["changed"]}
    deleted = {d["path"]: d for d in out["deleted"]}
    assert added["/etc/l1-only"] == "file" and added["/data/file2dir/inner"] == "file"
    assert "/etc/hostname" not in added and "/etc/hostname" not in changed
    assert changed["/etc/shadowed"]["changes"] == ["content", "mtime"]
    assert changed["/data/file2dir"]["changes"] == ["type"]
    assert changed["/data/file2dir"]["lower_type"] == "file"
    assert changed["/data/dir2file"]["hidden"] == 3  # child1, sub, sub/child2
    assert deleted == {"/etc/remove-me": {"path": "/etc/remove-me", "by": "whiteout",
                                          "lower_type": "file", "hidden": 1}}
    assert out["summary"] == {"added": len(out["added"]), "changed": len(out["changed"]),
                              "deleted": 1, "hidden": 4, "inert_whiteouts": 0}


def test_diff_opaque_and_whited_out_directories_are_one_line_each(gen):
    out = js("diff", "--cache", gen["cache"], gen["oci"], "3")
    deleted = {d["path"]: d for d in out["deleted"]}
    assert deleted["/opt/opaque"]["by"] == "opaque"
    assert deleted["/opt/opaque"]["hidden"] == 4  # old1, old2, sub, sub/old3
    assert deleted["/var/cache/app"] == {"path": "/var/cache/app", "by": "whiteout",
                                         "lower_type": "dir", "hidden": 4}
    assert not any(p.startswith("/var/cache/app/") or p.startswith("/opt/opaque/old")
                   for p in deleted)
    assert len([p for p in deleted if p.startswith("/many/")]) == 50
    assert out["summary"]["inert_whiteouts"] == 1  # never-existed
    text = ok("diff", "--cache", gen["cache"], gen["oci"], "3")
    assert "D opaque /opt/opaque  (4 lower paths hidden)" in text
    assert text.splitlines()[-1] == "%d added, %d changed, %d deleted (%d lower paths hidden)" % (
        out["summary"]["added"], out["summary"]["changed"], out["summary"]["deleted"],
        out["summary"]["hidden"])


def test_diff_bottom_layer_adds_everything_and_digest_prefixes_name_layers(gen):
    out = js("diff", "--cache", gen["cache"], gen["oci"], "1")
    assert out["changed"] == [] and out["deleted"] == []
    assert len(out["added"]) == len(Model(docker_layers(gen["docker"])[:1]).view)
    top = js("inspect", "--cache", gen["cache"], gen["oci"])["layers"][4]
    by_number = ok("diff", "--cache", gen["cache"], gen["oci"], "5")
    assert ok("diff", "--cache", gen["cache"], gen["oci"], top["digest"][7:19]) == by_number
    assert ok("diff", "--cache", gen["cache"], gen["oci"], top["diff_id"][:20]) == by_number


def test_diff_layer_out_of_range_names_the_valid_range(gen):
    for bad in ("0", "6", "99999999999999999999"):
        one_error(run("diff", "--cache", gen["cache"], gen["oci"], bad),
                  mentions=["layer %s does not exist" % bad, "1 (bottom) to 5 (top)"])
    one_error(run("diff", "--cache", gen["cache"], gen["oci"], "sha256:ffffffff"),
              mentions=["no layer's digest starts with ffffffff"])
    one_error(run("diff", "--cache", gen["cache"], gen["oci"], "xyz"),
              mentions=["a layer number or a digest prefix"])


# --- errors and the cache ------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["inspect"], ["which", "IMAGE"], ["diff", "IMAGE"],
                                  ["ls", "IMAGE", "/", "--no-such-flag"]])
def test_usage_errors_exit_2(gen, argv):
    argv = [gen["oci"] if a == "IMAGE" else a for a in argv]
    r = run(*argv)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("command", [["inspect"], ["ls"], ["which", "/etc"], ["diff", "1"]])
def test_bad_image_is_one_error_line(tmp_path, command):
    r = run(command[0], "--cache", str(tmp_path / "cache"), str(tmp_path / "missing"),
            *command[1:])
    one_error(r, mentions=["image "])


def test_commands_and_mount_share_the_cache(gen, tmp_path):
    cache = str(tmp_path / "cache")
    ok("inspect", "--cache", cache, gen["oci"])
    index_dir = os.path.join(cache, "index", "sha256")
    first = {n: os.stat(os.path.join(index_dir, n)).st_mtime_ns for n in os.listdir(index_dir)}
    assert len(first) == 5
    ok("ls", "--cache", cache, gen["oci"])
    r = run("-v", "diff", "--cache", cache, gen["oci"], "2")
    assert r.returncode == 0 and "index" not in r.stderr.lower(), r.stderr
    if os.path.exists("/dev/fuse"):
        mounter = Mounter(tmp_path / "mnt")
        try:
            m = mounter.mount(gen["oci"], cache=cache)
            assert os.listdir(m.path)
        finally:
            assert not mounter.cleanup()
    again = {n: os.stat(os.path.join(index_dir, n)).st_mtime_ns for n in os.listdir(index_dir)}
    assert again == first


# --- the real image ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("corpus-inspect-cache"))


@pytest.mark.corpus
def test_corpus_which_finds_python_in_the_layer_that_installed_it(corpus, corpus_cache):
    image = os.path.join(corpus, "oci")
    layers = js("inspect", "--cache", corpus_cache, image)["layers"]
    installed = [l["number"] for l in layers if "apt-get install" in l["created_by"]]
    assert len(installed) == 1, [l["created_by"] for l in layers]
    out = js("which", "--cache", corpus_cache, image, "/usr/bin/python3.11")
    assert out["type"] == "file"
    roles = {l["number"]: l["role"] for l in out["layers"]}
    assert roles[installed[0]] in ("serves", "shadowed")
    # The next layer's setcap copies python3.11 up: it serves, the install layer is shadowed.
    setcap = [l["number"] for l in layers if "setcap" in l["created_by"]]
    if setcap:
        assert roles.get(setcap[0]) == "serves" and roles[installed[0]] == "shadowed"


@pytest.mark.corpus
def test_corpus_wasted_bytes_are_what_later_layers_hide(corpus, corpus_cache):
    out = js("inspect", "--cache", corpus_cache, os.path.join(corpus, "oci"))
    model = Model(docker_layers(os.path.join(corpus, "docker")))
    assert [l["wasted_bytes"] for l in out["layers"]] == model.wasted()
    assert sum(model.wasted()) > 0  # rm -rf /usr/share/doc, /usr/share/locale, setcap copy-up
