"""Build logs without the command line, on a real temp store: a failed build's, the
one a record names, and a running build's followed until its directory goes."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
import zstandard

from lwrecipe.build.builder import kept_failure
from lwrecipe.build.logs import failed_log, follow, last_record, recorded_log, running_log
from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import UsageError
from lwrecipe.core.record import Blob, BuildRecord
from lwrecipe.store.store import Store


def test_a_failed_build_log_and_its_kept_directory(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    assert failed_log(store, "pkg") is None
    (store.root / "logs").mkdir(exist_ok=True)
    (store.root / "logs" / "pkg.log").write_bytes(b"make: *** error\n")
    found = failed_log(store, "pkg")
    assert found is not None and found.kept is None and b"".join(found.chunks()) == b"make: *** error\n"
    kept_failure(store, "pkg").mkdir(parents=True)
    found = failed_log(store, "pkg")
    assert found is not None and found.kept == kept_failure(store, "pkg")


def test_the_log_of_the_last_build_is_decompressed(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    assert last_record(store, "pkg") is None
    text = b"line\n" * 100_000
    log = store.put_bytes("cas", zstandard.ZstdCompressor().compress(text)).name
    key = Sha256(hashlib.sha256(b"pkg").hexdigest())
    store.put_record(
        BuildRecord(
            key=key, name="pkg", output_id=Sha256("b" * 64), blob=Blob(sha256=Sha256("c" * 64), size=1), log=Sha256(log)
        )
    )
    (store.root / "last").mkdir(exist_ok=True)
    (store.root / "last" / "pkg").write_text(key)
    record = last_record(store, "pkg")
    assert record is not None and b"".join(recorded_log(store, record)) == text


def test_no_running_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="pkg: no build of it is running"):
        running_log(Store(tmp_path / "cache").ensure(), "pkg")


def test_a_running_log_is_followed_until_its_directory_goes(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    top = store.root / "tmp" / "build-pkg-x1"
    top.mkdir()
    (top / "build.log").write_bytes(b"first\n")
    log = running_log(store, "pkg")
    assert log == top / "build.log"

    def finish() -> None:
        time.sleep(0.3)
        with log.open("ab") as fh:
            fh.write(b"second\n")
        log.unlink()
        top.rmdir()

    writer = threading.Thread(target=finish)
    writer.start()
    assert b"".join(follow(log)) == b"first\nsecond\n"
    writer.join()
    assert list(follow(log)) == []
