"""Compares a mounted image tree with a reference tree (an unpacked rootfs) the way a user would.

compare_trees(actual, expected) walks both trees without following symlinks and returns a list of
readable differences ("/etc/passwd: mode 0o100600 != 0o100644"); an empty list means the trees
agree on everything compared:

  - the names in every directory (byte-exact);
  - the file type and all mode bits, setuid, setgid and sticky included;
  - st_uid and st_gid;
  - st_size of regular files and symlinks, the sha256 of regular files' content, symlink targets;
  - st_rdev of character and block devices;
  - xattrs of regular files and directories: every name listxattr returns and its value. trusted.*
    and security.* are listed to root, so run as root to compare those too;
  - hard-link structure: which paths share an inode (inode numbers differ between the trees; the
    groups of paths must be the same) and st_nlink of every non-directory;
  - st_mtime in seconds and nanoseconds, and st_nlink of directories (2 + subdirectories).

Deliberately not compared:
  - atime and ctime: ctime cannot be set by an unpacker, and reading the reference changes its
    atime;
  - st_size and st_blocks of directories, st_blocks and st_blksize of files: they depend on the
    file system that holds the tree, not on the image;
  - the mtime of the root directory and of the paths in `skip_mtime` (relative to the root, e.g.
    "deep/implied"): directories no layer entry defines (implied parents), which unpackers give
    the time of unpacking, and paths whose reference mtime is an artefact of the unpacker (umoci
    does not restore the mtime of a directory it empties for a whiteout in the same layer, nor of
    the root, which each layer's extraction touches);
  - st_dev and the inode numbers themselves (only their grouping matters);
  - xattrs of symlinks and special files: Linux allows only trusted.* and security.* there.
"""
import errno
import hashlib
import os
import stat

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def type_name(mode):
    return _TYPES.get(stat.S_IFMT(mode), "type %o" % stat.S_IFMT(mode))


def show(rel):
    """A path relative to the tree root as the user would type it, escapes visible."""
    text = "/" + os.fsdecode(rel) if rel else "/"
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_xattrs(path):
    """{name: value} of a path's xattrs (not following symlinks), or an error string."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        return "listxattr: " + os.strerror(e.errno)
    out = {}
    for name in names:
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            out[name] = "<getxattr: %s>" % os.strerror(e.errno)
    return out


class Walk:
    """One tree's entries: relative path (bytes) -> lstat result, and directory listings."""

    def __init__(self, root):
        self.root = os.fsencode(root)
        self.stats = {}
        self.listings = {}
        self.errors = []
        self._walk(b"")

    def full(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def _walk(self, rel):
        try:
            st = os.lstat(self.full(rel))
        except OSError as e:
            self.errors.append("%s: lstat: %s" % (show(rel), os.strerror(e.errno)))
            return
        self.stats[rel] = st
        if not stat.S_ISDIR(st.st_mode):
            return
        try:
            names = sorted(os.listdir(self.full(rel)))
        except OSError as e:
            self.errors.append("%s: listdir: %s" % (show(rel), os.strerror(e.errno)))
            return
        self.listings[rel] = names
        for name in names:
            self._walk(os.path.join(rel, name) if rel else name)

    def link_groups(self):
        """For every non-directory path: the sorted tuple of paths sharing its inode."""
        by_inode = {}
        for rel, st in self.stats.items():
            if not stat.S_ISDIR(st.st_mode):
                by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
        groups = {}
        for paths in by_inode.values():
            group = tuple(sorted(paths))
            for rel in paths:
                groups[rel] = group
        return groups


def _fmt_mtime(st):
    return "%d.%09d" % (st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9)


def compare_entry(rel, a_path, e_path, a, e, skip_mtime, diffs):
    where = show(rel)
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(e.st_mode):
        diffs.append("%s: is a %s, expected a %s" % (where, type_name(a.st_mode),
                                                      type_name(e.st_mode)))
        return
    if a.st_mode != e.st_mode:
        diffs.append("%s: mode %s != expected %s" % (where, stat.filemode(a.st_mode),
                                                      stat.filemode(e.st_mode)))
    if (a.st_uid, a.st_gid) != (e.st_uid, e.st_gid):
        diffs.append("%s: owner %d:%d != expected %d:%d" % (where, a.st_uid, a.st_gid, e.st_uid,
                                                            e.st_gid))
    is_dir = stat.S_ISDIR(e.st_mode)
    if rel and rel not in skip_mtime and a.st_mtime_ns != e.st_mtime_ns:
        diffs.append("%s: mtime %s != expected %s" % (where, _fmt_mtime(a), _fmt_mtime(e)))
    if a.st_nlink != e.st_nlink:
        diffs.append("%s: st_nlink %d != expected %d" % (where, a.st_nlink, e.st_nlink))
    if stat.S_ISREG(e.st_mode):
        if a.st_size != e.st_size:
            diffs.append("%s: size %d != expected %d" % (where, a.st_size, e.st_size))
        else:
            try:
                if file_digest(a_path) != file_digest(e_path):
                    diffs.append("%s: content differs (same size %d)" % (where, e.st_size))
            except OSError as err:
                diffs.append("%s: read: %s" % (where, os.strerror(err.errno)))
    elif stat.S_ISLNK(e.st_mode):
        if a.st_size != e.st_size:
            diffs.append("%s: symlink size %d != expected %d" % (where, a.st_size, e.st_size))
        try:
            at, et = os.readlink(a_path), os.readlink(e_path)
            if at != et:
                diffs.append("%s: symlink target %r != expected %r" % (where, at, et))
        except OSError as err:
            diffs.append("%s: readlink: %s" % (where, os.strerror(err.errno)))
    elif stat.S_ISCHR(e.st_mode) or stat.S_ISBLK(e.st_mode):
        if a.st_rdev != e.st_rdev:
            diffs.append("%s: device %d:%d != expected %d:%d" % (
                where, os.major(a.st_rdev), os.minor(a.st_rdev), os.major(e.st_rdev),
                os.minor(e.st_rdev)))
    if stat.S_ISREG(e.st_mode) or is_dir:
        ax, ex = read_xattrs(a_path), read_xattrs(e_path)
        if ax != ex:
            if isinstance(ax, str) or isinstance(ex, str):
                diffs.append("%s: xattrs %s != expected %s" % (where, ax, ex))
            else:
                for name in sorted(set(ax) | set(ex)):
                    if name not in ax:
                        diffs.append("%s: xattr %s missing (expected %r)" % (where, name,
                                                                             ex[name]))
                    elif name not in ex:
                        diffs.append("%s: unexpected xattr %s=%r" % (where, name, ax[name]))
                    elif ax[name] != ex[name]:
                        diffs.append("%s: xattr %s=%r != expected %r" % (where, name, ax[name],
                                                                         ex[name]))


def compare_trees(actual, expected, skip_mtime=()):
    """Differences between the tree at `actual` and the reference tree at `expected`."""
    skip_mtime = {os.fsencode(p.strip("/")) for p in skip_mtime}
    a, e = Walk(actual), Walk(expected)
    diffs = list(a.errors) + ["reference: " + x for x in e.errors]
    for rel in sorted(set(a.listings) & set(e.listings)):
        an, en = set(a.listings[rel]), set(e.listings[rel])
        for name in sorted(en - an):
            diffs.append("%s: missing" % show(os.path.join(rel, name) if rel else name))
        for name in sorted(an - en):
            diffs.append("%s: unexpected" % show(os.path.join(rel, name) if rel else name))
    common = sorted(set(a.stats) & set(e.stats))
    for rel in common:
        compare_entry(rel, a.full(rel), e.full(rel), a.stats[rel], e.stats[rel], skip_mtime,
                      diffs)
    ag, eg = a.link_groups(), e.link_groups()
    reported = set()
    for rel in common:
        if rel not in eg or rel not in ag or rel in reported:
            continue
        want = tuple(p for p in eg[rel] if p in a.stats)
        got = tuple(p for p in ag[rel] if p in e.stats)
        if want != got:
            reported.update(want)
            reported.update(got)
            diffs.append("%s: shares its inode with [%s], expected [%s]" % (
                show(rel), ", ".join(show(p) for p in got), ", ".join(show(p) for p in want)))
    return diffs


def summary(diffs, limit=60):
    """The differences as one message, at most `limit` lines."""
    lines = diffs[:limit]
    if len(diffs) > limit:
        lines.append("... and %d more" % (len(diffs) - limit))
    return "%d differences:\n  %s" % (len(diffs), "\n  ".join(lines))


if __name__ == "__main__":
    import sys
    if len(sys.argv) < 3:
        sys.exit("usage: tree_compare.py ACTUAL EXPECTED [SKIP_MTIME_PATH...]")
    found = compare_trees(sys.argv[1], sys.argv[2], sys.argv[3:])
    print(summary(found) if found else "no differences")
    sys.exit(1 if found else 0)
