"""The TLS trust of every HTTPS exchange: the system's certificates, as
`ssl.create_default_context()` reads them (SSL_CERT_FILE and SSL_CERT_DIR
honoured), loaded on the first handshake. Making connections is web.py's."""

from __future__ import annotations

import os
import ssl
import sys
import threading
from typing import Any


class SystemTrust(ssl.SSLContext):
    """`ssl.create_default_context()`, with the system's certificates loaded on the
    first handshake instead of at creation (about 20 ms): a command that only
    speaks plain http never pays for them."""

    def __new__(cls) -> SystemTrust:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self) -> None:
        self._loaded = False
        self._loading = threading.Lock()
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:
            self.keylog_filename = keylog

    def _load(self) -> None:
        with self._loading:
            if not self._loaded:
                self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                self._loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load()  # TLS inside a TLS connection: an https:// proxy's tunnel
        return super().wrap_bio(*args, **kwargs)
