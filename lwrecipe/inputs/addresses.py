"""Which addresses a download from a recipe's URL may connect to.

A recipe's URL must not turn the host into a client of its own loopback
services or of the private network it sits in: loopback, link-local, private
(RFC 1918, fc00::/7), shared (100.64.0.0/10), "this network" (0.0.0.0/8),
multicast, reserved (240.0.0.0/4) and unspecified addresses are refused, IPv4 addresses
inside IPv6 ones (::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::/96, 6to4, Teredo)
judged as the IPv4 address they carry. Only the user allows some: their own
config's `[network] allow_private` and LWRECIPE_ALLOW_PRIVATE (addresses or
networks). The check is made on the address a connection is actually made to
(sockets.py), not on a separate lookup.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOW_ENV = "LWRECIPE_ALLOW_PRIVATE"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(Exception):
    """A connection to an address no recipe URL may reach; the text says which and why."""


def parse_networks(values: Iterable[str], where: str) -> tuple[Network, ...]:
    """Addresses or networks (127.0.0.1, 10.0.0.0/8, fd00::/8); a ValueError names the bad one."""
    found = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not an IP address or network") from None
    return tuple(found)


def _forms(address: Address) -> list[Address]:
    """The address and any IPv4 address it carries."""
    forms: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        packed = int(address)
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if address in NAT64 or packed >> 32 == 0:  # 64:ff9b::a.b.c.d, and the deprecated ::a.b.c.d
            embedded.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
        forms += [v4 for v4 in embedded if v4 is not None]
    return forms


_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
)  # RFC 1918, ULA, old site-local
_SHARED = (ipaddress.ip_network("100.64.0.0/10"),)  # carrier-grade NAT (RFC 6598)
_THIS_NETWORK = (ipaddress.ip_network("0.0.0.0/8"),)


def kind(address: Address) -> str | None:
    """What makes the address one a recipe's URL may not reach ("a loopback
    address", …), None when it may. Documentation and benchmarking ranges
    (192.0.2.0/24, 198.18.0.0/15, …) are not refused: never routed, they are what
    fake-IP resolvers (a sandbox's proxy, Clash) answer public names with."""
    for form in _forms(address):
        for test, name in (
            (form.is_loopback, "a loopback"),
            (form.is_link_local, "a link-local"),
            (form.is_multicast, "a multicast"),
            (form.is_unspecified, "an unspecified"),
            (form.is_reserved and form.version == 4, "a reserved"),
            (any(form in n for n in _THIS_NETWORK), 'a "this network"'),
            (any(form in n for n in _SHARED), "a shared (carrier-grade NAT)"),
            (any(form in n for n in _PRIVATE), "a private"),
        ):
            if test:
                return f"{name} address"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """What a download from a recipe's URL may connect to: public addresses, and
    the private ones the user allowed. `anything` allows every address (what the
    user configured themselves: remotes, mirrors)."""

    allowed: tuple[Network, ...] = ()
    anything: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, allowed: Iterable[str] = ()) -> AddressPolicy:
        """The user config's allow-list plus LWRECIPE_ALLOW_PRIVATE (comma or space separated)."""
        env = os.environ if env is None else env
        text = env.get(ALLOW_ENV, "")
        return cls(
            parse_networks([*allowed], "[network] allow_private")
            + parse_networks(text.replace(",", " ").split(), ALLOW_ENV)
        )

    def refusal(self, host: str, address: str) -> str | None:
        """Why `address` (what `host` resolved to) may not be connected to; None when it may."""
        if self.anything:
            return None
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is not part of it
        what = kind(ip)
        if what is None or any(
            form in net for form in _forms(ip) for net in self.allowed if form.version == net.version
        ):
            return None
        named = address if host == address else f"{host} ({address})"
        return (
            f"{named} is {what}; refused for a URL a recipe or project chose (the user's config can allow it: "
            f'[network] allow_private = ["{address}"])'
        )


ANYTHING = AddressPolicy(anything=True)

_PLAIN_HOST = re.compile(r"[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]+")  # a DNS name, an IPv4 or (unbracketed) IPv6 address
_SCP = re.compile(r"(?:[^@/]+@)?(\[[^\]/]+\]|[^:/]+):")  # git's user@host:path


def git_host(url: str) -> tuple[str, int] | None:
    """The host and port git connects to for url (http(s)://, git://, ssh://, or
    user@host:path); None for a repository on this machine. A ValueError when
    `url` is not one urllib can take apart (recipes and mirrors are checked on
    the way in: lwrecipe.core.urls)."""
    parts = urlsplit(url)
    ports = {"http": 80, "https": 443, "git": 9418, "ssh": 22, "git+ssh": 22, "ssh+git": 22}
    if "://" in url:
        if parts.scheme.lower() not in ports or not parts.hostname:
            return None
        return parts.hostname, parts.port or ports[parts.scheme.lower()]
    scp = _SCP.match(url)
    return (scp.group(1).strip("[]"), 22) if scp and "/" not in scp.group(1) else None


def git_refusal(policy: AddressPolicy, url: str) -> str | None:
    """Why git may not fetch url (a name resolving to an address policy refuses), or
    None. Git resolves the name again itself: a name answered otherwise the second
    time is not caught (docs/security.md)."""
    try:
        where = None if policy.anything else git_host(url)
    except ValueError as exc:
        return f"{url}: not a URL ({exc}); refused"
    if where is None:
        return None
    if not _PLAIN_HOST.fullmatch(where[0]):  # %-escapes and the like, which git decodes and this lookup would not
        return f"{where[0]!r} is not a plain host name or address; refused for a URL a recipe or project chose"
    try:
        infos = socket.getaddrinfo(where[0], where[1], type=socket.SOCK_STREAM)
    except OSError:
        return None  # git says it cannot resolve it
    for info in infos:
        reason = policy.refusal(where[0], str(info[4][0]))
        if reason is not None:
            return reason
    return None
