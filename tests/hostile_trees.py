"""Generated hostile trees for property tests of host-side file operations.

A `Tree` maps relative paths to `Node`s: files, directories and symlinks whose
targets are relative (inside or climbing out), absolute (into a decoy tree the
test owns), dangling, chained (a link to a link) or a loop. Names come from a
small alphabet so that two trees, or a tree and a destination, overlap often.
`materialise` writes a tree; `make_decoy` and `snapshot` give the "nothing
outside changed" check: snapshot the decoy (or any directory, minus the parts
the operation may change) before and after and compare.

Absolute link targets are written as `DECOY/...` in a generated tree and
replaced by the decoy's real path when the tree is materialised, so Hypothesis
can shrink them like any other value.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hypothesis import strategies as st

DECOY = "DECOY"  # stands for the decoy's absolute path in generated link targets
NAMES = ("a", "b", "c", "lib")


@dataclass(frozen=True)
class Node:
    kind: str  # "file" | "dir" | "link"
    data: bytes = b""
    mode: int = 0o644  # files: 0o644 or 0o755
    target: str = ""  # links: as generated (DECOY/... for absolute ones)


Tree = dict[str, Node]

names = st.sampled_from(NAMES)
rel_paths = st.lists(names, min_size=1, max_size=3).map("/".join)

link_targets = st.one_of(
    rel_paths,  # inside the tree, maybe dangling, maybe another link (a chain) or itself (a loop)
    rel_paths.map(lambda p: "../" + p),  # climbing out of the directory
    rel_paths.map(lambda p: "../../" + p),
    st.sampled_from(["", "victim-dir", "victim-dir/sub", "victim.txt", "missing"]).map(
        lambda p: f"{DECOY}/{p}".rstrip("/")
    ),  # absolute, into the decoy
    st.just("/nonexistent/absolute"),
)

nodes = st.one_of(
    st.builds(Node, st.just("file"), st.binary(max_size=16), st.sampled_from([0o644, 0o755])),
    st.builds(Node, st.just("dir")),
    st.builds(Node, st.just("link"), target=link_targets),
)


def _consistent(pairs: list[tuple[str, Node]]) -> Tree:
    """The entries in order, each kept only if its parents are (or can be made) directories."""
    tree: Tree = {}
    for rel, node in pairs:
        parts = PurePosixPath(rel).parts
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if rel in tree or any(p in tree and tree[p].kind != "dir" for p in parents):
            continue
        for p in parents:
            tree.setdefault(p, Node("dir"))
        tree[rel] = node
    return tree


trees = st.lists(st.tuples(rel_paths, nodes), max_size=8).map(_consistent)
"""A tree of up to eight entries (and the directories they need)."""


def materialise(tree: Tree, root: Path, decoy: Path) -> Path:
    """Write `tree` below `root` (created), DECOY in link targets replaced by `decoy`."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in sorted(tree, key=lambda r: r.count("/")):
        node, path = tree[rel], root / rel
        if node.kind == "dir":
            path.mkdir(exist_ok=True)
        elif node.kind == "file":
            path.write_bytes(node.data)
            path.chmod(node.mode)
        else:
            target = node.target.replace(DECOY, str(decoy), 1) if node.target.startswith(DECOY) else node.target
            os.symlink(target, path)
    return root


def make_decoy(decoy: Path) -> Path:
    """A tree outside every target that generated links point into: if an operation
    writes through a link, creates a file through one, or changes a mode through
    one, the decoy's snapshot changes."""
    (decoy / "victim-dir" / "sub").mkdir(parents=True)
    (decoy / "victim.txt").write_bytes(b"victim file\n")
    (decoy / "victim.txt").chmod(0o600)
    (decoy / "victim-dir" / "a").write_bytes(b"victim a\n")
    (decoy / "victim-dir" / "sub" / "b").write_bytes(b"victim b\n")
    (decoy / "victim-dir" / "sub").chmod(0o700)
    return decoy


Snapshot = dict[str, tuple[str, int, bytes]]


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> Snapshot:
    """Every entry below `root` (and `root` itself) but those under `skip`: its
    type, mode and bytes (a link's target, never followed)."""
    out: Snapshot = {}
    skipped = {str(p) for p in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        st_ = os.lstat(dirpath)
        out[os.path.relpath(dirpath, root)] = ("dir", stat.S_IMODE(st_.st_mode), b"")
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if path in skipped:
                continue
            st_ = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", 0, os.fsencode(os.readlink(path)))
            elif stat.S_ISREG(st_.st_mode):
                out[rel] = ("file", stat.S_IMODE(st_.st_mode), Path(path).read_bytes())
            else:
                out[rel] = ("other", stat.S_IMODE(st_.st_mode), b"")
    return out
