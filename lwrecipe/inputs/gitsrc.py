"""Git sources pinned by commit: fetch exactly `rev`, check it, export a canonical tree.

The exported tree is stored in sources/ under the sha256 of its canonical
archive, and refs/git-<rev> remembers that sha256 (a first-use pin the lockfile
records); refs/git-<rev>.commit keeps the commit object, which lets a mirror
directory's tree archive (`mirror export` writes them) be verified by commit
without git. Submodules are not followed. Reading a file of the tree (a patch
inside a git source) goes through `read_member`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.digests import Sha256, is_sha256, short
from ..core.errors import FetchError, IntegrityError, MissingToolError, OfflineMissing, UnsafeArchive
from ..core.files import fsync_dir, replace_text
from ..store.archive import write_tree
from ..store.store import Store
from .addresses import AddressPolicy, git_refusal
from .entries import UnpackLimits
from .hosttools import debian_package, fingerprint
from .mirrors import SCHEMES, Mirrors, is_local_git
from .unpack import extract_tar

# git runs with no system config, no prompt, and only the transports a mirror may
# name (mirrors.SCHEMES["git"]): never ext:: or another helper that runs a command.
# Every value from a recipe or config follows `--` or `--end-of-options`.
# No configuration but lwrecipe's own: not the system's, not a global one, and a HOME
# with nothing in it (git reads $HOME/.gitconfig and $XDG_CONFIG_HOME/git/config, and
# a checked-out tree must never be either: trace2 alone would write anywhere).
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "HOME": "/nonexistent",
    "XDG_CONFIG_HOME": "/nonexistent",
    "LC_ALL": "C",
    "GIT_ADVICE": "0",
    "GIT_ALLOW_PROTOCOL": ":".join(SCHEMES["git"]),
}


@dataclass(frozen=True)
class GitTree:
    label: str
    url: str
    rev: str
    sha256: Sha256  # of the canonical archive of the tree
    path: Path  # the archive in sources/
    origin: str  # "cache" or the URL


def ref_path(store: Store, rev: str) -> Path:
    return store.root / "refs" / f"git-{rev}"


def cached_tree(store: Store, rev: str) -> Sha256 | None:
    try:
        sha = ref_path(store, rev).read_text().strip()
    except FileNotFoundError:
        return None
    if is_sha256(sha) and store.verify_blob("sources", sha) is not None:
        return Sha256(sha)
    return None


def _git(args: list[str], cwd: Path, git: str) -> subprocess.CompletedProcess[str]:
    env = {**GIT_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([git, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)


def commit_path(store: Store, rev: str) -> Path:
    """The raw commit object beside the ref: what `mirror export` hands on, so a
    mirror's tree archive can be checked against the commit id."""
    return store.root / "refs" / f"git-{rev}.commit"


def fetch_tree(
    store: Store,
    label: str,
    url: str,
    rev: str,
    offline: bool = False,
    mirrors: Mirrors = Mirrors(),
    policy: AddressPolicy | None = None,
) -> GitTree:
    """The canonical tree of `rev`: from the cache, else a mirror directory's tree
    archive of that commit, else the git mirrors and the url (with --offline, only
    those on this machine). policy: the addresses the recipe's url may reach
    (default: public ones and LWRECIPE_ALLOW_PRIVATE's); the mirrors are the user's."""
    sha = cached_tree(store, rev)
    if sha is not None:
        return GitTree(label, url, rev, sha, store.path("sources", sha), "cache")
    places = _reachable(mirrors, url, offline)
    archives = [d for d in mirrors.directories() if (d / f"git-{rev}.tar").is_file()]
    if not places and not archives:  # only offline: online the url itself is a place
        raise OfflineMissing(
            f"{label}: git {url} @ {short(rev)} is in neither the cache nor a mirror, and --offline forbids fetching it"
        )
    with store.lock(f"git-{rev}"):
        sha = cached_tree(store, rev)
        if sha is not None:
            return GitTree(label, url, rev, sha, store.path("sources", sha), "cache")
        store.ensure()
        attempts: list[str] = []
        for directory in archives:
            try:
                sha = _import_archive(store, directory, rev)
            except (UnsafeArchive, tarfile.TarError, OSError, ValueError) as exc:
                attempts.append(f"{directory}/git-{rev}.tar: {exc}")
                continue
            return GitTree(label, url, rev, sha, store.path("sources", sha), str(directory))
        if not places:
            raise FetchError(f"{label}: git {url}", attempts)
        git = _git_tool(label)
        with tempfile.TemporaryDirectory(dir=store.root / "tmp", prefix="git-") as tmp:
            repo = Path(tmp) / "repo"
            repo.mkdir()
            origin = _checkout(repo, label, url, rev, git, places, attempts, policy)
            commit = _commit_object(repo, rev, git)
            sha = _store_tree(store, repo, rev, commit)
    return GitTree(label, url, rev, sha, store.path("sources", sha), origin)


def _store_tree(store: Store, tree: Path, rev: str, commit: bytes) -> Sha256:
    """Store the canonical archive of the checked-out `tree`, then the commit object
    and the ref to the archive (last: the ref is what marks the tree cached)."""
    with store.staging() as staged:
        write_tree(tree, staged, 0, exclude=(".git",))
        sha = staged.hexdigest()
        store.commit(staged, "sources")
    ref = ref_path(store, rev)
    replace_text(commit_path(store, rev), commit)
    replace_text(ref, sha + "\n")
    fsync_dir(ref.parent)
    return Sha256(sha)


def _commit_object(repo: Path, rev: str, git: str) -> bytes:
    env = {**GIT_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out = subprocess.run(
        [git, "cat-file", "commit", "--end-of-options", rev], cwd=repo, env=env, capture_output=True, timeout=600
    )
    if out.returncode != 0 or object_id("commit", out.stdout) != rev:
        raise IntegrityError(f"git {rev}: the commit object read back is not {rev}")
    return out.stdout


def _import_archive(store: Store, directory: Path, rev: str) -> Sha256:
    """A mirror directory's `git-<rev>.tar` and `git-<rev>.commit`, verified by commit
    as a fetch is: the commit object must hash to `rev`, and the files the archive
    holds must hash (as git hashes a tree: bytes unconverted, modes 100644, 100755 and
    120000) to the tree that commit names. What is stored is the canonical archive of
    that tree, the same bytes a fetch from git gives."""
    commit = (directory / f"git-{rev}.commit").read_bytes()
    if object_id("commit", commit) != rev:
        raise ValueError(f"git-{rev}.commit is not the commit object of {rev}")
    first = commit.split(b"\n", 1)[0].decode("ascii", "replace")
    if not first.startswith("tree ") or len(first) != 45:
        raise ValueError(f"git-{rev}.commit names no tree")
    archive = directory / f"git-{rev}.tar"
    with tempfile.TemporaryDirectory(dir=store.root / "tmp", prefix="gitar-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        extract_tar(archive, tree, str(archive))
        found = tree_id(tree)
        if found != first[5:]:
            raise ValueError(f"holds the tree {found}, not {first[5:]} of commit {rev}")
        return _store_tree(store, tree, rev, commit)


def object_id(kind: str, data: bytes) -> str:
    """A git object's id (SHA-1 repositories, as pinned revs are)."""
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(data)) + data, usedforsecurity=False).hexdigest()


def tree_id(directory: Path) -> str:
    """The id git gives the tree of `directory`'s files: entries sorted as git sorts
    them (a directory as its name plus '/'), blobs hashed unconverted."""
    entries = []
    with os.scandir(directory) as it:
        for entry in it:
            name = os.fsencode(entry.name)
            if entry.is_symlink():
                mode, oid, key = b"120000", object_id("blob", os.fsencode(os.readlink(entry.path))), name
            elif entry.is_dir():
                mode, oid, key = b"40000", tree_id(Path(entry.path)), name + b"/"
            elif entry.is_file():
                mode = b"100755" if entry.stat().st_mode & 0o100 else b"100644"
                oid, key = _blob_id(Path(entry.path)), name
            else:
                raise ValueError(f"{entry.path}: not a file, directory or symlink")
            entries.append((key, mode + b" " + name + b"\0" + bytes.fromhex(oid)))
    return object_id("tree", b"".join(line for _, line in sorted(entries)))


def _blob_id(path: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size, usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_commit(
    store: Store, label: str, url: str, rev: str, offline: bool = False, mirrors: Mirrors = Mirrors()
) -> bytes:
    """The commit object of a cached tree; one cached before they were kept is
    fetched again (from the git mirrors first)."""
    path = commit_path(store, rev)
    if path.is_file():
        return path.read_bytes()
    places = _reachable(mirrors, url, offline)
    if not places:  # only offline
        raise OfflineMissing(
            f"{label}: the commit object of {url} @ {short(rev)} is not in the cache and --offline forbids fetching it"
        )
    git = _git_tool(label)
    with tempfile.TemporaryDirectory(dir=store.ensure().root / "tmp", prefix="git-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        _git(["init", "-q"], repo, git)
        attempts: list[str] = []
        if not any(
            not _refused(where, url, None, attempts) and _fetch_rev(repo, where, rev, git, attempts) for where in places
        ):
            raise FetchError(f"{label}: git {url}", attempts)
        commit = _commit_object(repo, rev, git)
    replace_text(path, commit)
    return commit


def _reachable(mirrors: Mirrors, url: str, offline: bool) -> list[str]:
    """Where a git source may be fetched from: its mirrors, then its url; with
    --offline only the repositories on this machine."""
    places = mirrors.git_locations(url)
    return [where for where in places if is_local_git(where)] if offline else places


def _git_tool(label: str) -> str:
    tool = fingerprint("git")
    if tool is None:
        raise MissingToolError(label, "git", debian_package("git"))
    return str(tool.path)


def _checkout(
    repo: Path,
    label: str,
    url: str,
    rev: str,
    git: str,
    places: list[str],
    attempts: list[str],
    policy: AddressPolicy | None = None,
) -> str:
    """Check `rev` out in `repo` from the first of `places` that has it; returns which."""
    _git(["init", "-q"], repo, git)
    for where in places:
        if not _refused(where, url, policy, attempts) and _fetch_rev(repo, where, rev, git, attempts):
            break
    else:
        raise FetchError(f"{label}: git {url}", attempts)
    _verify_checkout(repo, label, url, rev, git, attempts)
    return where


def _refused(where: str, url: str, policy: AddressPolicy | None, attempts: list[str]) -> bool:
    """Whether `where`, the recipe's own url (not a mirror), is refused before git runs."""
    reason = git_refusal(policy or AddressPolicy.from_env(), where) if where == url else None
    if reason is not None:
        attempts.append(f"{where}: {reason}")
    return reason is not None


def _fetch_rev(repo: Path, where: str, rev: str, git: str, attempts: list[str]) -> bool:
    """The commit fetched from `where` (shallow, else all branches); False when it could not be."""
    shallow = _git(["fetch", "-q", "--depth", "1", "--no-tags", "--", where, rev], repo, git)
    if shallow.returncode == 0:
        return True
    attempts.append(f"{where}: shallow fetch of {rev}: {_last_line(shallow.stderr)}")
    full = _git(["fetch", "-q", "--no-tags", "--", where, "+refs/heads/*:refs/remotes/origin/*"], repo, git)
    if full.returncode == 0 and _resolve(repo, rev, git).returncode == 0:
        return True
    attempts.append(
        f"{where}: full fetch: {_last_line(full.stderr)}"
        if full.returncode
        else f"{where}: commit {rev} is not in the repository"
    )
    return False


def _verify_checkout(repo: Path, label: str, url: str, rev: str, git: str, attempts: list[str]) -> None:
    resolved = _resolve(repo, rev, git)
    if resolved.returncode != 0:
        attempts.append(f"{url}: commit {rev} is not in the repository")
        raise FetchError(f"{label}: git {url}", attempts)
    if resolved.stdout.strip() != rev:
        raise IntegrityError(f"{label}: git {url}: {rev} resolved to {resolved.stdout.strip()}")
    out = _git(
        ["-c", "core.autocrlf=false", "-c", "core.symlinks=true", "switch", "-q", "--detach", "--end-of-options", rev],
        repo,
        git,
    )
    if out.returncode != 0:
        raise FetchError(f"{label}: git {url}", [f"checkout of {rev}: {_last_line(out.stderr)}"])


def _resolve(repo: Path, rev: str, git: str) -> subprocess.CompletedProcess[str]:
    return _git(["rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}"], repo, git)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def read_member(archive: Path, member: str) -> bytes | None:
    """One regular file of a canonical tree archive, or None if it is not there."""
    with tarfile.open(archive, "r:") as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            return None
        if not info.isfile():
            return None
        fh = tar.extractfile(info)
        return fh.read() if fh else None


def extract_to(archive: Path, dest: Path, limits: UnpackLimits = UnpackLimits()) -> None:
    """Unpack a tree archive this module wrote (trusted: made here from a verified commit)."""
    dest.mkdir(parents=True, exist_ok=True)
    extract_tar(archive, dest, str(archive), limits)
