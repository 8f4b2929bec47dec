"""Settings from the project's lwrecipe.toml, the user's config file (read by
core/config) and the environment: remote caches, the signing key, trusted keys, mirrors.

Precedence (documented in docs/remote.md): the remote list is `--remote` if
given, else LWRECIPE_REMOTES, else the project's then the user's `[[remote]]`
tables; a remote named on the command line or in the environment takes its
settings from the config entry with the same URL or name, the user's before the
project's. The project's file is untrusted: what only the user may set applies
from it only when the user accepted the project (core/config/acceptance.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config.acceptance import GRPC
from ..core.config.defaults import DEFAULT_MIN_RATE, DEFAULT_TIMEOUT
from ..core.config.files import Warn, config_files, read_config, user_config_path, warn_on_stderr
from ..core.errors import UsageError
from ..core.urls import url_problem
from ..inputs.addresses import AddressPolicy
from ..inputs.mirrors import Mirrors, from_env, from_table
from .signing import PublicKey, SecretKey, load_secret, parse_public

if TYPE_CHECKING:
    from ..core.config.schema import RemoteEntry
    from ..inputs.web import Client

REMOTES_ENV = "LWRECIPE_REMOTES"
SIGNING_KEY_ENV = "LWRECIPE_SIGNING_KEY"
TRUSTED_KEYS_ENV = "LWRECIPE_TRUSTED_KEYS"


@dataclass(frozen=True)
class RemoteSpec:
    """One remote as the commands use it."""

    url: str  # http(s)://... or file:///absolute/dir
    name: str
    push: bool = False
    trusted: dict[str, PublicKey] = field(default_factory=dict)  # per-remote keys, on top of the global ones
    timeout: float = DEFAULT_TIMEOUT  # seconds: per read, the rate check's window, the least deadline
    min_rate: float = DEFAULT_MIN_RATE  # bytes per second over `timeout` seconds, or the transfer is abandoned
    auth_env: str | None = None
    auth_header: str = "Authorization"
    min_signers: int | None = None  # None: the settings' min_signers
    pull_only: bool = False  # a remote of a project the user did not accept: `build --push` skips it
    # what an http(s) remote may connect to: None, anything (the user chose it); a
    # remote an unaccepted project chose is held to what a recipe's URL may reach
    reach: AddressPolicy | None = None

    def __repr__(self) -> str:
        return f"RemoteSpec({self.name!r}, {self.url!r})"


@dataclass(frozen=True)
class Settings:
    remotes: tuple[RemoteSpec, ...]
    secret: SecretKey | None
    trusted: dict[str, PublicKey]
    min_signers: int = 1  # distinct trusted signers a remote record needs, unless its remote says
    executor: RemoteSpec | None = None  # build --executor: a REAPI Execution service

    def trust_for(self, remote: RemoteSpec) -> dict[str, PublicKey]:
        return {**self.trusted, **remote.trusted}

    def signers_for(self, remote: RemoteSpec) -> int:
        return remote.min_signers or self.min_signers


SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def normalise_url(url: str, base: Path | None = None, where: str = "remote") -> str:
    """An http(s) URL without its trailing slash, or file:// and an absolute path.
    An http(s) URL without a host or with a bad port is a UsageError naming `where`."""
    scheme = SCHEME_RE.match(url)
    if scheme and scheme.group(1).lower() in ("grpc", "grpcs"):
        from importlib.util import find_spec

        if find_spec("grpc") is None or find_spec("buildgrid") is None:  # what remote/reapi.py imports
            raise UsageError(
                f"{where}: {url}: a REAPI remote needs grpc and the REAPI protos: pip install 'lwrecipe[reapi]'"
            )
    elif scheme and scheme.group(1).lower() not in ("http", "https", "file"):
        raise UsageError(
            f"{where}: {url}: lwrecipe does not speak {scheme.group(1)}:// (a remote is an http:// or "
            "https:// URL, a grpc:// or grpcs:// REAPI server, a file:// URL or a directory)"
        )
    if url.startswith(("http://", "https://", "grpc://", "grpcs://")):
        from urllib.parse import urlsplit

        problem = url_problem(url)
        if problem is not None:
            raise UsageError(f"{where}: {url}: {problem}")
        parts = urlsplit(url)
        if not parts.hostname:
            raise UsageError(f"{where}: {url}: no host")
        return url.rstrip("/")
    path = Path(os.path.expanduser(url.removeprefix("file://")))
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return "file://" + str(path.resolve())


@dataclass(frozen=True)
class Network:
    """The user's `[network]`: what a recipe's URL may reach, and the pace downloads keep."""

    policy: AddressPolicy
    timeout: float = DEFAULT_TIMEOUT
    min_rate: float = DEFAULT_MIN_RATE


def load_network(
    project: Path | None = None, env: dict[str, str] | None = None, accept: bool = False, warn: Warn | None = None
) -> Network:
    """`[network]` from the user's config file, plus LWRECIPE_ALLOW_PRIVATE; a
    project's own `[network]` only when the user accepted the project (and the
    user's file has none), else `warn` is told it was ignored."""
    env = dict(os.environ) if env is None else env
    path = user_config_path(env)
    table, where = read_config(path).network, path
    if project is not None and table is None:
        files, accepted = config_files(project, env, accept, warn or (lambda _text: None))
        project_table = files[0][1].network
        if accepted and project_table is not None:
            table, where = project_table, files[0][0]
    policy = _policy(env, table, where)
    if table is None:
        return Network(policy)
    return Network(policy, table.timeout, table.min_rate)


def _policy(env: dict[str, str], doc_or_table: Any, where: Path) -> AddressPolicy:
    """The addresses a recipe's URL may reach: `[network] allow_private` of a config
    (a file's document or its `[network]` table) plus LWRECIPE_ALLOW_PRIVATE."""
    table = getattr(doc_or_table, "network", doc_or_table)
    try:
        return AddressPolicy.from_env(env, table.allow_private if table is not None else ())
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def download_client(
    project: Path | None = None, env: dict[str, str] | None = None, accept: bool = False, warn: Warn | None = None
) -> Client:
    """The HTTP client for a recipe's downloads, as the user's `[network]` says."""
    from ..inputs.fetch import make_client

    network = load_network(project, env, accept, warn)
    return make_client(read_timeout=network.timeout, min_rate=network.min_rate, policy=network.policy)


def _keys(texts: list[str], where: str) -> dict[str, PublicKey]:
    keys: dict[str, PublicKey] = {}
    _add_keys(keys, {}, [parse_public(t, where) for t in texts], where)
    return keys


def _add_keys(into: dict[str, PublicKey], origins: dict[str, str], keys: list[PublicKey], where: str) -> None:
    """Trust `keys` as well; one name for two different keys is refused: a signature
    is checked against the key its name leads to, so the name must say which."""
    for key in keys:
        known = into.get(key.name)
        if known is not None and known.raw != key.raw:
            first = origins.get(key.name, where)
            raise UsageError(
                f"{where}: trusted key {key.name!r} is not the key of that name in {first}; give each key its own name"
            )
        into.setdefault(key.name, key)
        origins.setdefault(key.name, where)


def _spec(entry: RemoteEntry, base: Path, where: str, pull_only: bool = False) -> RemoteSpec:
    url = normalise_url(entry.url, base, f"{where}: remote.url")
    return RemoteSpec(
        url=url,
        name=entry.name or url,
        push=entry.push,
        trusted=_keys(entry.trusted_keys, f"{where}: remote.trusted_keys"),
        timeout=entry.timeout,
        min_rate=entry.min_rate,
        auth_env=entry.auth_env,
        auth_header=entry.auth_header,
        min_signers=entry.min_signers,
        pull_only=pull_only,
    )


def load_settings(
    project: Path,
    cli_remotes: list[str] | None = None,
    env: dict[str, str] | None = None,
    executor: str | None = None,
    accept: bool = False,
    warn: Warn = warn_on_stderr,
) -> Settings:
    env = dict(os.environ) if env is None else env
    files, accepted = config_files(project, env, accept, warn)
    specs = [
        [_spec(r, path.parent, str(path), pull_only=i == 0 and not accepted) for r in doc.remote]
        for i, (path, doc) in enumerate(files)
    ]
    if not accepted and specs[0]:
        reach = _policy(env, files[1][1], files[1][0])
        specs[0] = [replace(spec, reach=reach) for spec in specs[0]]
    # an unaccepted project's gRPC remote only when the user names it (core/config/acceptance.py)
    configured = [s for s in specs[0] if not (s.pull_only and s.url.startswith(GRPC))] + specs[1]
    named = specs[1] + specs[0]  # a name or URL the user configured is the user's remote

    def lookup(text: str) -> RemoteSpec:
        for spec in named:
            if text in (spec.name, spec.url):
                return spec
        if not text.startswith(("http://", "https://", "file://", "/", ".", "~")) and "/" not in text:
            raise UsageError(f"remote {text!r}: not a URL, a directory or the name of a configured remote")
        url = normalise_url(text)
        return next((s for s in named if s.url == url), RemoteSpec(url=url, name=url))

    if cli_remotes or env.get(REMOTES_ENV, "").strip():  # named by the user: pushed to with --push
        given = cli_remotes or env[REMOTES_ENV].replace(",", " ").split()
        remotes = [replace(lookup(r), pull_only=False, reach=None) for r in given]
    else:
        remotes = [next(s for s in named if s.url == spec.url) for spec in configured]
    secret = None
    key_path = env.get(SIGNING_KEY_ENV)
    if key_path:
        secret = load_secret(Path(os.path.expanduser(key_path)))
    else:
        for path, doc in files:
            if doc.signing_key:
                secret = load_secret(path.parent / os.path.expanduser(doc.signing_key))
                break
    trusted: dict[str, PublicKey] = {}
    origins: dict[str, str] = {}
    sources = [(doc.trusted_keys, f"{path}: trusted_keys") for path, doc in files]
    for texts, where in [*sources, (env.get(TRUSTED_KEYS_ENV, "").split(), TRUSTED_KEYS_ENV)]:
        _add_keys(trusted, origins, [parse_public(t, where) for t in texts], where)
    if secret is not None:
        _add_keys(trusted, origins, [secret.public()], "the signing key")
    for spec in remotes:
        _add_keys(dict(trusted), dict(origins), list(spec.trusted.values()), f"remote {spec.name}: trusted_keys")
    unique = {spec.url: spec for spec in reversed(remotes)}  # the first mention of a URL wins
    min_signers = max(doc.min_signers for _, doc in files)  # the stricter of the project's and the user's
    runner = None
    if executor is not None:
        runner = lookup(executor)
        if not runner.url.startswith(("grpc://", "grpcs://")):
            raise UsageError(
                f"--executor {executor}: an executor is a REAPI server, grpc://host:port[/instance] or grpcs://…"
            )
    return Settings(tuple(s for s in remotes if unique[s.url] is s), secret, trusted, min_signers, runner)


def load_mirrors(
    project: Path, env: dict[str, str] | None = None, accept: bool = False, warn: Warn = warn_on_stderr
) -> Mirrors:
    """Every mirror setting, tried in this order: the environment's, then the
    project's lwrecipe.toml (what of it applies: config_files), then the user's
    config file (relative directories in a file are taken from that file's directory).
    An unaccepted project's mirrors are `held` to the addresses a recipe's URL may reach."""
    env = dict(os.environ) if env is None else env
    mirrors = from_env(env)
    files, accepted = config_files(project, env, accept, warn)
    found = [
        Mirrors()
        if doc.mirrors is None
        else from_table(doc.mirrors.files, doc.mirrors.git, doc.mirrors.debian, path.parent.absolute(), str(path))
        for path, doc in files
    ]
    project_mirrors, user_mirrors = found
    if not accepted:  # the project's own choices reach only what a recipe's URL may
        project_mirrors = project_mirrors.hold(mirrors + user_mirrors)
    return mirrors + project_mirrors + user_mirrors
