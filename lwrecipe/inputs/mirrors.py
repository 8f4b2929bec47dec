"""Where inputs may come from besides their recipes' URLs: the user's mirror settings.

Three kinds, each from the environment and from the `[mirrors]` table of the
project's lwrecipe.toml and of the user's config file (remote/config.py reads
those and adds them here, after the environment's):

- files: HTTP(S) base URLs or local directories holding downloads by sha256 or
  name (LWRECIPE_MIRRORS), and git trees by commit (`git-<rev>.tar`);
- git: `PREFIX=MIRROR` rules for git URLs (LWRECIPE_GIT_MIRRORS);
- debian: `PREFIX=BASE` rules for Debian package URLs (LWRECIPE_DEBIAN_MIRRORS).

The fetchers are handed one Mirrors value; none of them reads the environment.
Whatever a mirror serves is verified as if it came from the recipe's URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIRRORS_ENV = "LWRECIPE_MIRRORS"
GIT_MIRRORS_ENV = "LWRECIPE_GIT_MIRRORS"
DEBIAN_MIRRORS_ENV = "LWRECIPE_DEBIAN_MIRRORS"

Rule = tuple[str, str]  # (prefix, mirror)


def parse_rules(text: str) -> tuple[Rule, ...]:
    """`PREFIX=MIRROR` rules, `;`- or space-separated; a rule without both halves is ignored."""
    rules = []
    for rule in re.split(r"[;\s]+", text):
        prefix, sep, base = rule.partition("=")
        if sep and prefix and base:
            rules.append((prefix, base))
    return tuple(rules)


def rewrite(url: str, rules: tuple[Rule, ...]) -> list[str]:
    """Other places of `url`: each rule whose prefix starts `url` gives its mirror
    followed by the rest of the url (the mirror alone when the rule names the whole url)."""
    found = []
    for prefix, base in rules:
        if url.startswith(prefix):
            rest = url[len(prefix):].lstrip("/")
            found.append(f"{base.rstrip('/')}/{rest}" if rest else base)
    return list(dict.fromkeys(found))


def is_local_git(where: str) -> bool:
    """Whether git takes `where` as a path on this machine (git's own rule: no
    `scheme://` and no `host:` before the first slash), or a file:// URL."""
    if where.startswith("file://"):
        return True
    return "://" not in where and not re.match(r"[^/]+:", where)


@dataclass(frozen=True)
class Mirrors:
    files: tuple[str, ...] = ()  # HTTP(S) base URLs or absolute local directories
    git: tuple[Rule, ...] = ()
    debian: tuple[Rule, ...] = ()

    def __add__(self, other: Mirrors) -> Mirrors:
        return Mirrors(tuple(dict.fromkeys(self.files + other.files)), tuple(dict.fromkeys(self.git + other.git)),
                       tuple(dict.fromkeys(self.debian + other.debian)))

    def git_locations(self, url: str) -> list[str]:
        """Where to fetch a git source from, in order: the mirrors its rules give,
        then the url itself. The commit decides, never the place."""
        return [*rewrite(url, self.git), url]

    def debian_urls(self, url: str) -> list[str]:
        """Other places of a Debian package (snapshot.debian.org keeps every version
        ever published, so pins outlive a point release)."""
        return rewrite(url, self.debian)

    def directories(self) -> list[Path]:
        """The local directories among the file mirrors."""
        return [Path(m.removeprefix("file://")) for m in self.files if not m.startswith(("http://", "https://"))]


def local_path(text: str, base: Path) -> str:
    """A directory setting made absolute: `~` expanded, a relative one taken from `base`."""
    path = Path(os.path.expanduser(text.removeprefix("file://")))
    return str(path if path.is_absolute() else (base / path).absolute())


def file_mirrors(entries: list[str] | tuple[str, ...], base: Path) -> tuple[str, ...]:
    return tuple(e.rstrip("/") if e.startswith(("http://", "https://")) else local_path(e, base)
                 for e in (e.strip() for e in entries) if e)


def from_env(env: Mapping[str, str] | None = None) -> Mirrors:
    """The environment's settings; relative directories are taken from the current one."""
    env = os.environ if env is None else env
    cwd = Path.cwd()
    git = tuple((prefix, local_path(base, cwd) if is_local_git(base) else base)
                for prefix, base in parse_rules(env.get(GIT_MIRRORS_ENV, "")))
    return Mirrors(file_mirrors(env.get(MIRRORS_ENV, "").split(";"), cwd), git,
                   parse_rules(env.get(DEBIAN_MIRRORS_ENV, "")))


def from_table(files: list[str], git: Mapping[str, list[str]], debian: Mapping[str, list[str]],
               base: Path) -> Mirrors:
    """A config file's `[mirrors]` table; relative directories are taken from the file's own."""
    git_rules = tuple((prefix, local_path(m, base) if is_local_git(m) else m)
                      for prefix, places in git.items() for m in places)
    debian_rules = tuple((prefix, m) for prefix, places in debian.items() for m in places)
    return Mirrors(file_mirrors(files, base), git_rules, debian_rules)
