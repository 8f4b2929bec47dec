"""A configured remote, opened: file:// is a directory (directory.py), grpc://
and grpcs:// a REAPI server (reapi.py), anything else an HTTP cache (http.py).
The secret a remote's `auth_env` names is read here, and only here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ...core.errors import UsageError
from ...inputs.retry import RetryPolicy
from ..config import RemoteSpec
from .base import Backend
from .directory import DirBackend

if TYPE_CHECKING:
    from .reapi import ReapiBackend

REAPI_SCHEMES = ("grpc://", "grpcs://")


def open_backend(spec: RemoteSpec, env: Mapping[str, str] | None = None, policy: RetryPolicy | None = None) -> Backend:
    """The backend of `spec`; `policy`: how its requests are retried."""
    if spec.url.startswith("file://"):
        return DirBackend(spec)
    if spec.url.startswith(REAPI_SCHEMES):
        return open_reapi(spec, env, policy)
    from ...inputs.addresses import ANYTHING  # a remote the user chose may be anywhere
    from ...inputs.fetch import make_client
    from .http import HttpBackend

    secret = _secret(spec, env)
    client = make_client(read_timeout=spec.timeout, min_rate=spec.min_rate, policy=spec.reach or ANYTHING)
    if secret is not None:
        client.add_credential(spec.url, spec.auth_header, secret)
    return HttpBackend(spec, client, policy or RetryPolicy())


def open_reapi(
    spec: RemoteSpec, env: Mapping[str, str] | None = None, policy: RetryPolicy | None = None
) -> ReapiBackend:
    """The REAPI server of `spec` (a remote cache, or the executor of build --executor)."""
    if not spec.url.startswith(REAPI_SCHEMES):
        raise UsageError(f"remote {spec.name}: not a REAPI server (grpc://host:port[/instance] or grpcs://…)")
    from .reapi import ReapiBackend  # here: grpc and the protos load only for a grpc remote

    return ReapiBackend(spec, token=_secret(spec, env), policy=policy or RetryPolicy())


def _secret(spec: RemoteSpec, env: Mapping[str, str] | None) -> str | None:
    if not spec.auth_env:
        return None
    value = (os.environ if env is None else env).get(spec.auth_env)
    if not value:
        raise UsageError(f"remote {spec.name}: auth_env {spec.auth_env} is not set")
    return value
