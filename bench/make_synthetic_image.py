#!/usr/bin/python3
"""Writes a synthetic docker-save image directory with many entries, for memory and scale tests.

    bench/make_synthetic_image.py OUT --entries N [--layers L] [--file-size BYTES]

The files (empty unless --file-size) sit in directories three to five levels deep, about 32
entries per directory, spread round-robin over L layers. OUT/manifest.json can be mounted.
"""
import argparse
import hashlib
import io
import json
import os
import random
import tarfile


def paths(n):
    words = ["lib", "share", "python3", "site-packages", "include", "doc", "locale", "man",
             "x86_64-linux-gnu", "encodings", "email", "http", "json", "asyncio", "sqlite3",
             "__pycache__"]
    rng = random.Random(42)
    dirs = ["usr"]
    out = []
    d = 0
    while len(out) < n:
        base = dirs[d % len(dirs)]
        d += 1
        for i in range(30):
            if len(out) >= n:
                break
            out.append("%s/%s_%d%s" % (base, rng.choice(words), len(out),
                                        (".py", ".so.1", ".txt")[i % 3]))
        if base.count("/") < 4:
            for _ in range(2):
                dirs.append("%s/%s%d" % (base, rng.choice(words), len(dirs)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--entries", type=int, required=True)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--file-size", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    all_paths = paths(args.entries)
    data = b"x" * args.file_size
    diff_ids, names = [], []
    for layer in range(args.layers):
        name = "layer%d.tar" % layer
        h = hashlib.sha256()
        with open(os.path.join(args.out, name), "wb") as raw:
            class Hashing:
                def write(self, b):
                    h.update(b)
                    return raw.write(b)
            with tarfile.open(fileobj=Hashing(), mode="w|", format=tarfile.PAX_FORMAT) as t:
                for p in all_paths[layer::args.layers]:
                    info = tarfile.TarInfo(p)
                    info.size = len(data)
                    info.mtime = 1700000000
                    t.addfile(info, io.BytesIO(data) if data else None)
        diff_ids.append("sha256:" + h.hexdigest())
        names.append(name)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    with open(os.path.join(args.out, config_name), "wb") as f:
        f.write(config)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump([{"Config": config_name, "RepoTags": ["synthetic:latest"], "Layers": names}], f)


if __name__ == "__main__":
    main()
