"""The schema of lwrecipe.toml and the user's config file (pydantic), loaded only
when a config file has something in it (files.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import RecipeError
from .defaults import DEFAULT_MIN_RATE, DEFAULT_TIMEOUT


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)


# Every number a deadline is made of is finite and bounded: `inf` (or 1e309) would
# remove the deadline, or overflow the clock it is added to.
MAX_TRANSFER_TIMEOUT = 3600.0  # seconds a transfer may go without its pace
MAX_RATE = float(1 << 40)  # bytes per second
MAX_BUILD_SECONDS = 30 * 86400.0
TransferSeconds = Annotated[float, Field(gt=0, le=MAX_TRANSFER_TIMEOUT, allow_inf_nan=False, strict=False)]
Rate = Annotated[float, Field(ge=1, le=MAX_RATE, allow_inf_nan=False, strict=False)]  # bytes/s over `timeout` s


class RemoteEntry(_Strict):
    url: str
    name: str | None = None
    push: bool = False
    trusted_keys: list[str] = []
    timeout: TransferSeconds = DEFAULT_TIMEOUT
    min_rate: Rate = DEFAULT_MIN_RATE
    auth_env: str | None = None  # the environment variable holding the header's value
    auth_header: str = "Authorization"
    # A record from this remote is used only when this many distinct trusted keys
    # signed it (the record's own signatures and co-signatures beside it).
    min_signers: Annotated[int, Field(ge=1)] | None = None


class MirrorsEntry(_Strict):
    """`[mirrors]`: the same settings as LWRECIPE_MIRRORS, LWRECIPE_GIT_MIRRORS and
    LWRECIPE_DEBIAN_MIRRORS, a list of places per URL prefix instead of `PREFIX=` rules."""

    files: list[str] = []
    git: dict[str, list[str]] = {}
    debian: dict[str, list[str]] = {}


class NetworkEntry(_Strict):
    """`[network]`: downloads of a recipe's URLs (a project's only when accepted)."""

    allow_private: list[str] = []  # addresses and networks a recipe's URL may reach after all
    timeout: TransferSeconds = DEFAULT_TIMEOUT
    min_rate: Rate = DEFAULT_MIN_RATE


class AcceptEntry(_Strict):
    """`[accept]` (the user's config only; Nix's accept-flake-config, per project):
    the projects whose lwrecipe.toml applies whole, what only a user may set included."""

    projects: list[str] = []  # absolute directories (`~` expanded) holding that lwrecipe.toml


def _size(value: object) -> object:
    """`100M`, `1G`, `1.5GiB` or a number of bytes."""
    if isinstance(value, str):
        from ..errors import UsageError
        from ..sizes import parse_size

        try:
            return parse_size(value)
        except UsageError:
            raise ValueError(f"{value!r} is not a size such as 100M or 1G") from None
    return value


Seconds = Annotated[float, Field(gt=0, le=MAX_BUILD_SECONDS, allow_inf_nan=False, strict=False)]
Size = Annotated[int, BeforeValidator(_size), Field(gt=0)]


class BuildLimitsEntry(_Strict):
    """`[build]` of the user's config: the limits of every build (docs/builds.md
    "Limits"); the command line's flags of the same names win. A project's
    lwrecipe.toml cannot set them."""

    timeout: Seconds | None = None
    max_silent_time: Seconds | None = None
    max_log_size: Size | None = None
    max_memory: Size | None = None
    max_procs: Annotated[int, Field(gt=0)] | None = None


class UnpackEntry(_Strict):
    """`[unpack]` of the user's config: what one source archive may unpack to
    (docs/sources.md "Unpacking"). A project's lwrecipe.toml cannot set them."""

    max_size: Size | None = None
    max_entries: Annotated[int, Field(gt=0)] | None = None


class ConfigFile(_Strict):
    signing_key: str | None = None
    trusted_keys: list[str] = []
    min_signers: Annotated[int, Field(ge=1)] = 1  # for every remote that does not set its own
    remote: list[RemoteEntry] = []
    mirrors: MirrorsEntry | None = None
    network: NetworkEntry | None = None  # from a project's lwrecipe.toml only when accepted (acceptance.py)
    accept: AcceptEntry | None = None
    build: BuildLimitsEntry | None = None  # from a project's lwrecipe.toml only when accepted (acceptance.py)
    unpack: UnpackEntry | None = None  # from a project's lwrecipe.toml only when accepted (acceptance.py)


def validate(raw: dict[str, Any], shown: str) -> ConfigFile:
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as exc:
        from ..messages import problem

        raise RecipeError(shown, [problem(e) for e in exc.errors()]) from None
