"""What a project's lwrecipe.toml may set on its own, and what applies from it only
when the user accepted the project (Nix's `accept-flake-config`).

A project's config is untrusted: a stranger's pull request edits it as easily as
a recipe. Settings that act on the host or on credentials — git mirrors (values
handed to git), a remote's credentials or push, keys, places on this machine
outside the project — apply from it only with `--accept-project-config` or when
the project's directory is in `[accept] projects` of the user's own config.
Otherwise `restrict` drops them, and the caller says once what was ignored. The
table of which setting is which is in docs/remote.md; harmless settings (a
remote to pull from, whose records the user's own keys still check; download
mirrors, whose bytes are checked by sha256) keep working.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .defaults import DEFAULT_MIN_RATE, DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from .schema import MirrorsEntry, RemoteEntry

GRPC = ("grpc://", "grpcs://")
NETWORK = ("http://", "https://", *GRPC)
DEFAULT_AUTH_HEADER = "Authorization"


def accepted_projects(doc: Any, shown: str) -> list[Path]:
    """The directories a user config's `[accept] projects` names, resolved."""
    if doc.accept is None:
        return []
    found = []
    for i, text in enumerate(doc.accept.projects):
        path = Path(os.path.expanduser(text))
        if not path.is_absolute():
            raise UsageError(f"{shown}: accept.projects[{i}]: {text!r} is not an absolute directory")
        found.append(path.resolve())
    return found


def is_accepted(project: Path, user_doc: Any, user_path: Path, flag: bool) -> bool:
    """Whether the project's lwrecipe.toml applies whole: the flag, the user's
    `[accept] projects`, or a user config that is that very file."""
    project_file = project / "lwrecipe.toml"
    if flag or (user_path.exists() and project_file.exists() and user_path.samefile(project_file)):
        return True
    return project.resolve() in accepted_projects(user_doc, str(user_path))


def _inside(text: str, project: Path) -> bool:
    """Whether a remote URL or mirror value names a place inside the project (a
    network URL is not a place on this machine, and counts as inside)."""
    if text.startswith(NETWORK) or ("://" in text and not text.startswith("file://")):
        return True
    path = Path(os.path.expanduser(text.strip().removeprefix("file://")))
    return (project / path).resolve().is_relative_to(project.resolve())


def restrict(doc: Any, project: Path, user_min_signers: int) -> tuple[Any, list[str]]:
    """The project's config `doc` without what only the user may set, and the fields
    dropped (`remote[0].auth_env`, `mirrors.git`, ...)."""
    if (
        doc.signing_key is None
        and not doc.trusted_keys
        and not doc.remote
        and doc.mirrors is None
        and doc.accept is None
        and doc.network is None
        and doc.build is None
        and doc.unpack is None
    ):
        return doc, []  # nothing in it (a missing file too)
    ignored: list[str] = []
    update: dict[str, Any] = {}
    if doc.signing_key is not None:
        ignored.append("signing_key")
        update["signing_key"] = None
    if doc.trusted_keys:
        ignored.append("trusted_keys")
        update["trusted_keys"] = []
    remotes = []
    for i, entry in enumerate(doc.remote):
        kept, dropped = _remote(entry, project, user_min_signers)
        ignored += [f"remote[{i}]{field}" for field in dropped]
        if kept is not None:
            remotes.append(kept)
    update["remote"] = remotes
    if doc.mirrors is not None:
        update["mirrors"], dropped = _mirrors(doc.mirrors, project)
        ignored += dropped
    if doc.accept is not None:
        ignored.append("accept")
        update["accept"] = None
    if doc.network is not None:  # which addresses a recipe's URL may reach
        ignored.append("network")
        update["network"] = None
    if doc.build is not None:  # build limits: a stranger's could only raise them
        ignored.append("build")
        update["build"] = None
    if doc.unpack is not None:  # archive limits: a stranger's could only raise them
        ignored.append("unpack")
        update["unpack"] = None
    return doc.model_copy(update=update), ignored


def _remote(entry: RemoteEntry, project: Path, user_min_signers: int) -> tuple[RemoteEntry | None, list[str]]:
    """A project's remote as it may be used: pulled from only, without credentials,
    with the user's keys, no fewer signers than the user asks for and deadlines no
    looser than the defaults (a smaller timeout, a larger min_rate). A directory
    outside the project is not used at all ("" names the whole entry). A gRPC server
    is kept only for the user to name (`--remote NAME`, `--executor NAME`;
    load_settings leaves it out otherwise): gRPC resolves its host itself, so the
    addresses a recipe's URL may not reach (inputs/addresses.py) could not be kept
    from it; an http(s) remote is held to them (RemoteSpec.reach)."""
    if not _inside(entry.url, project):
        return None, [""]
    dropped: list[str] = [""] if entry.url.startswith(GRPC) else []
    update: dict[str, Any] = {}
    if entry.push:
        dropped.append(".push")
        update["push"] = False
    if entry.auth_env is not None:
        dropped.append(".auth_env")
        update["auth_env"] = None
    if entry.auth_header != DEFAULT_AUTH_HEADER:
        dropped.append(".auth_header")
        update["auth_header"] = DEFAULT_AUTH_HEADER
    if entry.trusted_keys:
        dropped.append(".trusted_keys")
        update["trusted_keys"] = []
    if entry.min_signers is not None and entry.min_signers < user_min_signers:
        dropped.append(".min_signers")
        update["min_signers"] = None
    if entry.timeout > DEFAULT_TIMEOUT:  # longer waits on the project's server than the user's defaults
        dropped.append(".timeout")
        update["timeout"] = DEFAULT_TIMEOUT
    if entry.min_rate < DEFAULT_MIN_RATE:  # a slower drip than the user's defaults accept
        dropped.append(".min_rate")
        update["min_rate"] = DEFAULT_MIN_RATE
    return entry.model_copy(update=update), dropped


def _mirrors(table: MirrorsEntry, project: Path) -> tuple[MirrorsEntry, list[str]]:
    """Download mirrors on the network or inside the project; never a git mirror
    (git is handed its value) nor a directory elsewhere on this machine."""
    files = [m for m in table.files if _inside(m, project)]
    debian = {prefix: [m for m in places if _inside(m, project)] for prefix, places in table.debian.items()}
    dropped = [
        name
        for name, kept, given in (
            ("mirrors.files", len(files), len(table.files)),
            ("mirrors.git", 0, sum(len(places) for places in table.git.values())),
            ("mirrors.debian", sum(map(len, debian.values())), sum(map(len, table.debian.values()))),
        )
        if kept < given
    ]
    return table.model_copy(update={"files": files, "git": {}, "debian": debian}), dropped
