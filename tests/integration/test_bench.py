"""`layerfs bench`: lookups through the merged index, layer by layer, and through a real mount."""
import json
import os

from conftest import fuse_mounts_under, require_fuse, run_layerfs


def walk(root):
    """Every path below root (relative), as the merged view shows it."""
    out = []
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            out.append(os.path.relpath(os.path.join(d, name), root))
    return out


def test_bench_json_counts_every_path_and_times_both_ways(image, tmp_path):
    r = run_layerfs("bench", "--json", "--passes", "2", "--cache", str(tmp_path / "cache"),
                    image.form("oci"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["paths"] == len(walk(image.rootfs))
    assert out["layers"] == 5
    for way in ("merged", "layer_by_layer"):
        s = out[way]
        assert s["count"] == 2 * out["paths"]
        assert 0 < s["p50_ns"] <= s["p99_ns"]
        assert s["mean_ns"] > 0
    assert "mount" not in out


def test_bench_mount_lstats_and_reads_through_fuse_and_unmounts(image, tmp_path):
    require_fuse()
    r = run_layerfs("bench", "--json", "--mount", "--passes", "1", "--cache",
                    str(tmp_path / "cache"), image.form("docker-manifest"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    regular = [p for p in walk(image.rootfs)
               if os.path.isfile(os.path.join(image.rootfs, p))
               and not os.path.islink(os.path.join(image.rootfs, p))]
    assert out["mount"]["lstat"]["count"] == out["paths"]
    round_trip = out["mount"]["round_trip"]  # statfs: one FUSE round trip each
    assert round_trip["count"] == 2000 and 0 < round_trip["p50_ns"] <= round_trip["p99_ns"]
    assert out["mount"]["read"]["files"] == len(regular)
    assert out["mount"]["read"]["bytes"] == sum(
        os.path.getsize(os.path.join(image.rootfs, p)) for p in regular)
    assert not fuse_mounts_under("/tmp/layerfs-bench-")


def test_bench_table_names_each_way(image, tmp_path):
    r = run_layerfs("bench", "--cache", str(tmp_path / "cache"), image.form("oci-plain"))
    assert r.returncode == 0, r.stderr
    assert "merged index" in r.stdout and "layer by layer (5 layers" in r.stdout
    assert "p50" in r.stdout and "p99" in r.stdout


def test_bench_bad_image_is_one_error_line(tmp_path):
    r = run_layerfs("bench", str(tmp_path / "missing"))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("layerfs: error: image ")
