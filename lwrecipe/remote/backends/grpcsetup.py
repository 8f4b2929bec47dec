"""What talking to a REAPI server needs before the first call: grpc and the REAPI
protos (BuildGrid's generated modules), imported only when a grpc remote is used
(`pip install 'lwrecipe[reapi]'`), and the certificates a grpcs:// server is
checked against."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def protos() -> Any:
    import os

    # gRPC's C core logs failures (a refused TLS handshake, say) to stderr on its
    # own; lwrecipe says each in one line of its own. GRPC_VERBOSITY set by the
    # user is kept, for debugging.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    import grpc
    from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
    from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
    from buildgrid._protos.google.bytestream import bytestream_pb2 as bs
    from buildgrid._protos.google.bytestream import bytestream_pb2_grpc as bs_grpc

    return grpc, re, re_grpc, bs, bs_grpc


def system_roots() -> bytes | None:
    """The certificates a grpcs:// server is checked against: the same as for
    https (SSL_CERT_FILE, else the system's bundle, where a private CA added with
    update-ca-certificates is), not the roots grpc carries; None leaves grpc's."""
    import os
    import ssl

    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return Path(candidate).read_bytes()
    return None
