"""Where inputs may come from besides their recipes' URLs: the user's mirror settings.

Three kinds, each from the environment and from the `[mirrors]` table of the
project's lwrecipe.toml and of the user's config file (remote/config.py reads
those and adds them here, after the environment's):

- files: HTTP(S) base URLs or local directories holding downloads by sha256 or
  name (LWRECIPE_MIRRORS), and git trees by commit (`git-<rev>.tar`);
- git: `PREFIX=MIRROR` rules for git URLs (LWRECIPE_GIT_MIRRORS);
- debian: `PREFIX=BASE` rules for Debian package URLs (LWRECIPE_DEBIAN_MIRRORS).

The fetchers are handed one Mirrors value; none of them reads the environment.
Whatever a mirror serves is verified as if it came from the recipe's URL. A
mirror the user chose (the environment, their own config, a project they
accepted) may be at any address; one an unaccepted project chose is `held` to
the addresses a recipe's URL may reach (addresses.py). Every
value is checked on the way in (`check`): a URL of a scheme its kind is fetched
with, or a path; never a value git or another tool could take as an option.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.errors import UsageError
from ..core.urls import url_problem

MIRRORS_ENV = "LWRECIPE_MIRRORS"
GIT_MIRRORS_ENV = "LWRECIPE_GIT_MIRRORS"
DEBIAN_MIRRORS_ENV = "LWRECIPE_DEBIAN_MIRRORS"

Rule = tuple[str, str]  # (prefix, mirror)

# The schemes each kind of mirror is fetched with (git's own transports; the
# downloader's). git is also run with GIT_ALLOW_PROTOCOL set to these (gitsrc.py).
SCHEMES = {
    "files": ("http", "https", "file"),
    "debian": ("http", "https", "file"),
    "git": ("http", "https", "git", "file", "ssh"),
}
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def check(value: str, kind: str, where: str) -> str:
    """`value` as a mirror of `kind` ("files", "git" or "debian"), or a UsageError
    naming `where`: a URL of one of SCHEMES[kind] whose host is no option, or (not
    for debian, whose mirrors are URLs) a path; for git also `host:path`, as scp
    writes it, but never a transport helper (`ext::…`). Nothing may start with '-'
    (a tool would take it as an option) or hold a control character."""
    if _CONTROL_RE.search(value):
        raise UsageError(f"{where}: {value!r}: a mirror holds no control characters")
    if value.startswith("-"):
        raise UsageError(f"{where}: {value!r}: a mirror cannot start with '-' (a tool would take it as an option)")
    scheme = _SCHEME_RE.match(value)
    if scheme:
        if scheme.group(1).lower() not in SCHEMES[kind]:
            raise UsageError(
                f"{where}: {value!r}: a {kind} mirror is a URL of {', '.join(SCHEMES[kind])}"
                f"{' or a path' if kind != 'debian' else ''}, not {scheme.group(1)}://"
            )
        authority = value[scheme.end() :].split("/", 1)[0]
        if authority.startswith("-") or authority.rpartition("@")[2].startswith("-"):
            raise UsageError(f"{where}: {value!r}: a host cannot start with '-'")
        if problem := url_problem(value):
            raise UsageError(f"{where}: {value!r}: {problem}")
        return value
    if kind == "debian":
        raise UsageError(f"{where}: {value!r}: a debian mirror is an http://, https:// or file:// URL")
    if kind == "git" and "::" in value:
        raise UsageError(f"{where}: {value!r}: git transport helpers (<transport>::<address>) are not mirrors")
    return value


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
            rest = url[len(prefix) :].lstrip("/")
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
    # file mirrors and Debian bases a project the user did not accept chose (and the
    # user did not): reached only where a recipe's URL may be
    held: frozenset[str] = frozenset()

    def __add__(self, other: Mirrors) -> Mirrors:
        return Mirrors(
            tuple(dict.fromkeys(self.files + other.files)),
            tuple(dict.fromkeys(self.git + other.git)),
            tuple(dict.fromkeys(self.debian + other.debian)),
            self.held | other.held,
        )

    def places(self) -> frozenset[str]:
        """Every file mirror and Debian base."""
        return frozenset(self.files) | {base for _, base in self.debian}

    def hold(self, chosen_by_user: Mirrors) -> Mirrors:
        """These mirrors, all held to a recipe's addresses except those `chosen_by_user` names too."""
        return replace(self, held=self.held | (self.places() - chosen_by_user.places()))

    def git_locations(self, url: str) -> list[str]:
        """Where to fetch a git source from, in order: the mirrors its rules give,
        then the url itself. The commit decides, never the place."""
        return [*rewrite(url, self.git), url]

    def debian_urls(self, url: str, users_only: bool = False) -> list[str]:
        """Other places of a Debian package (snapshot.debian.org keeps every version
        ever published, so pins outlive a point release); users_only: only those
        of mirrors not `held`."""
        return rewrite(url, tuple(r for r in self.debian if not (users_only and r[1] in self.held)))

    def directories(self) -> list[Path]:
        """The local directories among the file mirrors."""
        return [Path(m.removeprefix("file://")) for m in self.files if not m.startswith(("http://", "https://"))]


def local_path(text: str, base: Path) -> str:
    """A directory setting made absolute: `~` expanded, a relative one taken from `base`."""
    path = Path(os.path.expanduser(text.removeprefix("file://")))
    return str(path if path.is_absolute() else (base / path).absolute())


def file_mirrors(entries: list[str] | tuple[str, ...], base: Path, where: str) -> tuple[str, ...]:
    checked = (check(e, "files", where) for e in (e.strip() for e in entries) if e)
    return tuple(e.rstrip("/") if e.startswith(("http://", "https://")) else local_path(e, base) for e in checked)


def git_rules(rules: list[Rule] | tuple[Rule, ...], base: Path, where: str) -> tuple[Rule, ...]:
    """Checked git rules; a local repository path is made absolute (taken from `base`)."""
    checked = ((prefix, check(m, "git", where)) for prefix, m in rules)
    return tuple((prefix, local_path(m, base) if is_local_git(m) else m) for prefix, m in checked)


def from_env(env: Mapping[str, str] | None = None) -> Mirrors:
    """The environment's settings; relative directories are taken from the current one."""
    env = os.environ if env is None else env
    cwd = Path.cwd()
    debian = tuple(
        (prefix, check(m, "debian", DEBIAN_MIRRORS_ENV)) for prefix, m in parse_rules(env.get(DEBIAN_MIRRORS_ENV, ""))
    )
    return Mirrors(
        file_mirrors(env.get(MIRRORS_ENV, "").split(";"), cwd, MIRRORS_ENV),
        git_rules(parse_rules(env.get(GIT_MIRRORS_ENV, "")), cwd, GIT_MIRRORS_ENV),
        debian,
    )


def from_table(
    files: list[str], git: Mapping[str, list[str]], debian: Mapping[str, list[str]], base: Path, shown: str
) -> Mirrors:
    """A config file's `[mirrors]` table (`shown` names the file in errors);
    relative directories are taken from the file's own."""
    git_found = git_rules(
        [(prefix, m) for prefix, places in git.items() for m in places], base, f"{shown}: mirrors.git"
    )
    debian_rules = tuple(
        (prefix, check(m, "debian", f"{shown}: mirrors.debian")) for prefix, places in debian.items() for m in places
    )
    return Mirrors(file_mirrors(files, base, f"{shown}: mirrors.files"), git_found, debian_rules)
