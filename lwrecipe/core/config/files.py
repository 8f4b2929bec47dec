"""Finding and reading the config files: the project's lwrecipe.toml (without
what only the user may set, unless accepted: acceptance.py) and the user's own."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..documents import CONFIG_LIMIT, read_toml_file
from .acceptance import is_accepted, restrict

if TYPE_CHECKING:
    from .schema import ConfigFile

USER_CONFIG_ENV = "LWRECIPE_CONFIG"
PROJECT_FILE = "lwrecipe.toml"


@dataclass(frozen=True)
class NoFile:
    """What a missing or empty config file says: schema.ConfigFile's defaults,
    without loading pydantic (a push or pull of everything never needs it)."""

    signing_key: None = None
    trusted_keys: tuple[()] = ()
    remote: tuple[()] = ()
    mirrors: None = None
    network: None = None
    min_signers: int = 1
    accept: None = None
    build: None = None
    unpack: None = None


def user_config_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get(USER_CONFIG_ENV):
        return Path(env[USER_CONFIG_ENV])
    import platformdirs

    return Path(platformdirs.user_config_dir("lwrecipe")) / "config.toml"


def read_config(path: Path) -> ConfigFile | NoFile:
    try:
        raw = read_toml_file(path, CONFIG_LIMIT)
    except FileNotFoundError:
        return NoFile()
    if not raw:
        return NoFile()
    from .schema import validate

    return validate(raw, str(path))


Warn = Callable[[str], None]


def warn_on_stderr(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def config_files(
    project: Path, env: dict[str, str], accept: bool = False, warn: Warn = warn_on_stderr
) -> tuple[list[tuple[Path, ConfigFile | NoFile]], bool]:
    """The project's config (without what only the user may set, unless the user
    accepted the project; `warn` is told what was ignored) and the user's, and
    whether the project was accepted."""
    user = user_config_path(env)
    user_doc = read_config(user)
    path = project / PROJECT_FILE
    doc = read_config(path)  # as written: restrict() below decides what of it applies
    accepted = is_accepted(project, user_doc, user, accept)
    if not accepted:
        doc, ignored = restrict(doc, project, user_doc.min_signers)
        if ignored:
            warn(
                f"{path}: {', '.join(ignored)}: ignored (a project's config cannot set these; accept with "
                f"--accept-project-config or [accept] projects in {user})"
            )
    return [(path, doc), (user, user_doc)], accepted


def setting(files: list[tuple[Path, ConfigFile | NoFile]], table: str, name: str) -> tuple[Any, Path] | None:
    """`[table] name` and the file it is from: the user's, else the project's (which
    config_files left in only when the user accepted the project); None if neither
    sets it."""
    for path, doc in reversed(files):  # the user's file is the last
        value = getattr(getattr(doc, table), name, None)
        if value is not None:
            return value, path
    return None
