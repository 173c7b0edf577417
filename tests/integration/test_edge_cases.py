"""Small images, one layer rule each, mounted and compared with umoci's unpack of the same image.

Each case returns its layers (bottom first) and the paths whose mtime the reference does not
define. Where layerfs deliberately differs from umoci, a separate test says how and why."""
import os
import tarfile

import pytest

import make_image
from conftest import assert_same_tree, umoci_unpack
from make_image import Layer


def dir_whiteout_then_recreated():
    l0, l1, l2 = Layer(), Layer(), Layer()
    l0.dir("w/")
    l0.file("w/old", "old\n")
    l0.dir("w/sub/")
    l0.file("w/sub/deeper", "deeper\n")
    l1.whiteout("w")
    l2.dir("w/", mode=0o750)
    l2.file("w/new", "new\n")
    return [l0, l1, l2], []


def dir_whiteout_then_recreated_implied():
    l0, l1, l2 = Layer(), Layer(), Layer()
    l0.dir("w/", mode=0o700)
    l0.file("w/old", "old\n")
    l1.whiteout("w")
    l2.file("w/new", "new\n")  # no entry for w/
    return [l0, l1, l2], ["w"]


def file_whiteout_then_recreated_as_dir():
    l0, l1, l2 = Layer(), Layer(), Layer()
    l0.file("f", "file\n")
    l1.whiteout("f")
    l2.dir("f/")
    l2.file("f/child", "child\n")
    return [l0, l1, l2], []


def whiteout_after_entry_in_same_layer():
    l0, l1 = Layer(), Layer()
    l0.dir("d/")
    l0.file("d/x", "lower x\n")
    l0.dir("d/y/")
    l0.file("d/y/lower-child", "lower\n")
    l1.dir("d/")
    l1.file("d/x", "upper x\n")
    l1.whiteout("d/x")  # whiteouts apply to lower layers only: d/x stays
    l1.dir("d/y/")
    l1.file("d/y/upper-child", "upper\n")
    l1.whiteout("d/y")
    # umoci restores the metadata of the whiteout's parent (d), not of the d/y it empties.
    return [l0, l1], ["d/y"]


def whiteout_before_entry_in_same_layer():
    l0, l1 = Layer(), Layer()
    l0.dir("d/")
    l0.file("d/x", "lower x\n")
    l0.dir("d/y/")
    l0.file("d/y/lower-child", "lower\n")
    l1.dir("d/")
    l1.whiteout("d/x")
    l1.file("d/x", "upper x\n")
    l1.whiteout("d/y")
    l1.dir("d/y/")
    l1.file("d/y/upper-child", "upper\n")
    return [l0, l1], []


def opaque_root():
    l0, l1 = Layer(), Layer()
    l0.dir("old/")
    l0.file("old/file", "old\n")
    l0.file("top", "top\n")
    l1.opaque("")
    l1.file("new", "new\n")
    return [l0, l1], []


def opaque_marker_after_children():
    l0, l1 = Layer(), Layer()
    l0.dir("o/")
    l0.file("o/lower", "lower\n")
    l1.dir("o/")
    l1.file("o/upper", "upper\n")
    l1.opaque("o")  # the marker may come after the layer's own children
    return [l0, l1], []


def hard_links_across_layers():
    l0, l1 = Layer(), Layer()
    l0.file("a", "A0\n", mode=0o600, uid=7)
    l0.hardlink("a2", "a")
    l1.hardlink("b", "a")  # the lower a, which this layer then replaces
    l1.hardlink("c", "a2")  # a lower name that is itself a hard link
    l1.file("a", "A1\n")
    return [l0, l1], []


def same_path_dir_file_dir_in_one_layer():
    l0 = Layer()
    l0.dir("r/")
    l0.file("r/c1", "first incarnation\n")
    l0.file("r", "a file in between\n")
    l0.dir("r/", mode=0o711)
    l0.file("r/c2", "last incarnation\n")
    return [l0], []


def unusual_member_paths():
    l0 = Layer()
    l0.dir("./")
    l0.file("/abs/file", "absolute member name\n")
    l0.file("dots/../undotted", "dot-dot inside the image\n")
    l0.file("././x//y", "doubled separators\n")
    return [l0], ["abs", "x"]


def non_utf8_names():
    l0 = Layer()
    l0.dir("n/")
    latin1 = os.fsdecode(b"n/caf\xe9-gnu")  # raw bytes in the header
    l0.file(latin1, "GNU header\n", fmt=tarfile.GNU_FORMAT)
    l0.file(os.fsdecode(b"n/caf\xe9-pax"), "PAX path, hdrcharset=BINARY\n")
    l0.symlink("n/link", os.fsdecode(b"caf\xe9-gnu"))
    return [l0], []


def symlink_header_mode():
    l0 = Layer()
    l0.file("target", "t\n")
    l0.symlink("link", "target", mode=0o644)
    return [l0], []


def empty_xattr_value():
    l0 = Layer()
    l0.file("f", "f\n", xattrs={"user.empty": "", "user.set": "v"})
    return [l0], []


def write_through_lower_symlink():
    l0, l1 = Layer(), Layer()
    l0.dir("usr/")
    l0.dir("usr/lib/")
    l0.file("usr/lib/base", "base\n")
    l0.symlink("lib", "usr/lib")
    l1.file("lib/foo", "foo\n")  # no entry for lib/: the lower lib is a symlink
    return [l0, l1], []


CASES = [
    dir_whiteout_then_recreated,
    dir_whiteout_then_recreated_implied,
    file_whiteout_then_recreated_as_dir,
    whiteout_after_entry_in_same_layer,
    whiteout_before_entry_in_same_layer,
    opaque_root,
    opaque_marker_after_children,
    hard_links_across_layers,
    same_path_dir_file_dir_in_one_layer,
    unusual_member_paths,
    non_utf8_names,
    symlink_header_mode,
    empty_xattr_value,
]


def test_member_under_lower_symlink_makes_a_directory(mounter, tmp_path):
    """A member whose parent path is a symlink in a lower layer (lib -> usr/lib, then lib/foo).

    Layers are unions, not extraction scripts: like the overlayfs snapshotters of containerd,
    docker and podman, layerfs shows lib as a directory holding foo, hiding the lower symlink.
    umoci instead extracts through the symlink into usr/lib; this is a deliberate difference."""
    layers, _ = write_through_lower_symlink()
    layout = make_image.write_layout(str(tmp_path), "oci", [l.close() for l in layers])
    m = mounter.mount(layout)
    lib = os.path.join(m.path, "lib")
    assert os.path.isdir(lib) and not os.path.islink(lib)
    assert sorted(os.listdir(lib)) == ["foo"]
    assert open(os.path.join(lib, "foo")).read() == "foo\n"
    assert sorted(os.listdir(os.path.join(m.path, "usr/lib"))) == ["base"]
    m.assert_healthy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_layer_rule_matches_umoci(case, mounter, tmp_path):
    layers, skip_mtime = case()
    layout = make_image.write_layout(str(tmp_path), "oci", [l.close() for l in layers])
    rootfs = umoci_unpack(layout, str(tmp_path / "bundle"))
    m = mounter.mount(layout)
    assert_same_tree(m.path, rootfs, skip_mtime)
    m.assert_healthy()
