"""Git sources pinned by commit: fetch exactly `rev`, check it, export a canonical tree.

The exported tree is stored in sources/ under the sha256 of its canonical
archive, and refs/git-<rev> remembers that sha256 (a first-use pin the lockfile
records). Submodules are not followed. Reading a file of the tree (a patch
inside a git source) goes through `read_member`.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import FetchError, IntegrityError, MissingToolError, OfflineMissing
from ..files import fsync_dir
from ..recipes.keys import Sha256, is_sha256, short
from ..store.archive import write_tree
from ..store.store import Store
from .fetch import prefix_mirrors
from .hosttools import debian_package, fingerprint
from .unpack import data_filter, extract_all

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "GIT_ADVICE": "0"}


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
    env = {**GIT_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run([git, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)


def fetch_tree(store: Store, label: str, url: str, rev: str, offline: bool = False) -> GitTree:
    sha = cached_tree(store, rev)
    if sha is not None:
        return GitTree(label, url, rev, sha, store.path("sources", sha), "cache")
    if offline:
        raise OfflineMissing(f"{label}: git {url} @ {short(rev)} is not in the cache and --offline forbids fetching it")
    tool = fingerprint("git")
    if tool is None:
        raise MissingToolError(label, "git", debian_package("git"))
    with store.lock(f"git-{rev}"):
        sha = cached_tree(store, rev)
        if sha is not None:
            return GitTree(label, url, rev, sha, store.path("sources", sha), "cache")
        store.ensure()
        with tempfile.TemporaryDirectory(dir=store.root / "tmp", prefix="git-") as tmp:
            repo = Path(tmp) / "repo"
            repo.mkdir()
            origin = _checkout(repo, label, url, rev, str(tool.path))
            with store.staging() as staged:
                write_tree(repo, staged, 0, exclude=(".git",))  # type: ignore[arg-type]
                sha = staged.hexdigest()
                path = store.commit(staged, "sources")
        ref = ref_path(store, rev)
        ref.parent.mkdir(exist_ok=True)
        tmp_ref = ref.with_name(ref.name + ".tmp")
        tmp_ref.write_text(sha + "\n")
        os.replace(tmp_ref, ref)
        fsync_dir(ref.parent)
    return GitTree(label, url, rev, sha, path, origin)


GIT_MIRRORS_ENV = "LWRECIPE_GIT_MIRRORS"


def git_locations(url: str, value: str | None = None) -> list[str]:
    """Where to fetch a git source from, in order: each `PREFIX=MIRROR` of
    LWRECIPE_GIT_MIRRORS (`;`-separated) whose PREFIX starts `url` gives MIRROR plus
    the rest of the url (a whole URL as PREFIX maps one repository, e.g. to a local
    bare clone), then the url itself. The commit decides, never the place."""
    rules = os.environ.get(GIT_MIRRORS_ENV, "") if value is None else value
    return [*prefix_mirrors(url, rules), url]


def _checkout(repo: Path, label: str, url: str, rev: str, git: str) -> str:
    """Check `rev` out in `repo`; returns where it came from."""
    attempts: list[str] = []
    _git(["init", "-q"], repo, git)
    for where in git_locations(url):
        if _fetch_rev(repo, where, rev, git, attempts):
            break
    else:
        raise FetchError(f"{label}: git {url}", attempts)
    _verify_checkout(repo, label, url, rev, git, attempts)
    return where


def _fetch_rev(repo: Path, where: str, rev: str, git: str, attempts: list[str]) -> bool:
    """The commit fetched from `where` (shallow, else all branches); False when it could not be."""
    shallow = _git(["fetch", "-q", "--depth", "1", "--no-tags", where, rev], repo, git)
    if shallow.returncode == 0:
        return True
    attempts.append(f"{where}: shallow fetch of {rev}: {_last_line(shallow.stderr)}")
    full = _git(["fetch", "-q", "--no-tags", where, "+refs/heads/*:refs/remotes/origin/*"], repo, git)
    if full.returncode == 0 and _git(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], repo, git).returncode == 0:
        return True
    attempts.append(f"{where}: full fetch: {_last_line(full.stderr)}" if full.returncode
                    else f"{where}: commit {rev} is not in the repository")
    return False


def _verify_checkout(repo: Path, label: str, url: str, rev: str, git: str, attempts: list[str]) -> None:
    resolved = _git(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], repo, git)
    if resolved.returncode != 0:
        attempts.append(f"{url}: commit {rev} is not in the repository")
        raise FetchError(f"{label}: git {url}", attempts)
    if resolved.stdout.strip() != rev:
        raise IntegrityError(f"{label}: git {url}: {rev} resolved to {resolved.stdout.strip()}")
    out = _git(["-c", "core.autocrlf=false", "-c", "core.symlinks=true", "checkout", "-q", "--detach", rev],
               repo, git)
    if out.returncode != 0:
        raise FetchError(f"{label}: git {url}", [f"checkout of {rev}: {_last_line(out.stderr)}"])


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


def extract_to(archive: Path, dest: Path) -> None:
    """Unpack a tree archive this module wrote (trusted: made here from a verified commit)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:") as tar:
        extract_all(tar, dest, lambda member, path: data_filter(member, path, str(archive)))
