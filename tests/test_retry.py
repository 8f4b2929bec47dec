"""The one retry policy (inputs/retry.py): Retry-After in both of its forms, the
backoff, and the loop, alone and under a download and an HTTP remote's requests
to a real server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import hashlib
import time
from pathlib import Path

import pytest

from lwrecipe.core.digests import Sha256
from lwrecipe.inputs.fetch import Downloader, Wanted, make_client
from lwrecipe.inputs.retry import Failure, GaveUp, RetryPolicy, parse_retry_after, retrying
from lwrecipe.remote.backends.http import HttpBackend
from lwrecipe.remote.config import RemoteSpec
from lwrecipe.store.store import Store
from tests.servers import fault_server

DATA = b"retried bytes\n" * 1000
SHA = Sha256(hashlib.sha256(DATA).hexdigest())


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0 and parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None and parse_retry_after("soon") is None
    later = parse_retry_after(email.utils.formatdate(time.time() + 100, usegmt=True))
    assert later is not None and 95 <= later <= 100
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:10 GMT", now=lambda: 978307200.0) == 10.0


def test_the_server_s_delay_is_capped_and_the_backoff_doubles_with_jitter() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=3.0, max_retry_after=5.0)
    assert policy.delay(1, 2.0) == 2.0 and policy.delay(1, 600.0) == 5.0
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 3.0), (9, 3.0)):
        assert base / 2 <= policy.delay(attempt, None) <= base


def test_retrying_tries_again_until_the_attempts_are_spent() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def once() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Failure("HTTP 503", retry=True, retry_after=1.5)
        return "done"

    assert retrying(RetryPolicy(attempts=3), once, sleeps.append) == "done"
    assert len(calls) == 3 and sleeps == [1.5, 1.5]
    calls.clear()
    with pytest.raises(GaveUp) as caught:
        retrying(RetryPolicy(attempts=2), once, sleeps.append)
    assert caught.value.reason == "HTTP 503 (after 2 attempts)" and caught.value.attempts == 2


def test_a_failure_that_cannot_help_is_not_retried() -> None:
    sleeps: list[float] = []

    def once() -> None:
        raise Failure("HTTP 404")

    with pytest.raises(GaveUp, match=r"^HTTP 404$"):
        retrying(RetryPolicy(attempts=4), once, sleeps.append)
    assert sleeps == []


def test_a_download_waits_as_a_dated_retry_after_says(tmp_path: Path) -> None:
    sleeps: list[float] = []
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    store = Store(tmp_path / "cache").ensure()
    client = make_client(connect_timeout=2, read_timeout=2.0)
    with fault_server() as server:
        url = server.add("/a", DATA, f"503:{when}")
        got = Downloader(store, client, policy=RetryPolicy(attempts=2), sleep=sleeps.append).fetch(
            Wanted("pkg: sources[0]", SHA, (url,), "a")
        )
    client.close()
    assert got.path.read_bytes() == DATA and len(sleeps) == 1 and 25 <= sleeps[0] <= 30


def test_an_http_remote_waits_as_a_dated_retry_after_says(tmp_path: Path) -> None:
    """Behaviour change (issue #32): the HTTP remote read only a Retry-After in
    seconds and backed off its own way on a date; it now follows the download's
    rule."""
    sleeps: list[float] = []
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    with fault_server() as server:
        server.add(f"/ac/{SHA}", DATA, f"503:{when}", "503:7")
        backend = HttpBackend(
            RemoteSpec(url=server.url(""), name="cache"),
            make_client(connect_timeout=2, read_timeout=2.0),
            RetryPolicy(attempts=3),
            sleeps.append,
        )
        try:
            assert backend.read_small("ac", SHA, len(DATA)) == DATA
        finally:
            backend.close()
    assert len(sleeps) == 2 and 25 <= sleeps[0] <= 30 and sleeps[1] == 7.0
