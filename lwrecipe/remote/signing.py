"""ed25519 keys and signatures on build records.

A secret key file holds one line `NAME:<base64 of the 32-byte seed>` (mode
0600); a public key is written `NAME:<base64 of the 32-byte key>`. A record is
signed over its signed bytes (core/record.py: everything but its signatures),
so signatures can be added without changing what they sign.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import IntegrityError, UsageError
from ..core.record import BuildRecord, Signature

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class PublicKey:
    name: str
    raw: bytes  # 32 bytes

    def text(self) -> str:
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"


@dataclass(frozen=True)
class SecretKey:
    name: str
    seed: bytes  # 32 bytes; never printed

    def __repr__(self) -> str:
        return f"SecretKey({self.name!r}, <hidden>)"

    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pub = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return PublicKey(self.name, pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(data)


def _split(text: str, what: str) -> tuple[str, bytes]:
    name, sep, b64 = text.strip().partition(":")
    if not sep or not NAME_RE.match(name):
        raise UsageError(f"{what}: expected NAME:BASE64")
    try:
        raw = base64.b64decode(b64, validate=True)
    except binascii.Error:
        raise UsageError(f"{what}: not valid base64") from None
    if len(raw) != 32:
        raise UsageError(f"{what}: an ed25519 key has 32 bytes, this one {len(raw)}")
    return name, raw


def parse_public(text: str, where: str = "trusted key") -> PublicKey:
    name, raw = _split(text, f"{where} {text.partition(':')[0]!r}")
    return PublicKey(name, raw)


def generate(name: str, out: Path) -> PublicKey:
    """Write a new secret key to `out` (created 0600, never overwritten)."""
    if not NAME_RE.match(name):
        raise UsageError(f"key name {name!r}: letters, digits, '.', '_' and '-' only")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{out}: already exists; not overwriting a key") from None
    except OSError as exc:
        raise UsageError(f"{out}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{name}:{base64.b64encode(seed).decode()}\n")
    return SecretKey(name, seed).public()


def load_secret(path: Path) -> SecretKey:
    """Read a secret key file; refused when others may read it."""
    try:
        st = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read secret key: {exc.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UsageError(
            f"{path}: secret key is readable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 {path}"
        )
    name, seed = _split(text, f"{path}")
    return SecretKey(name, seed)


def fingerprint(raw: bytes) -> str:
    """A public key's short form for messages: SHA256: and 16 hex digits of its hash."""
    import hashlib

    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:16]


def _pub(entry: Signature) -> bytes | None:
    if entry.pub is None:
        return None
    try:
        raw = base64.b64decode(entry.pub, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def signed_by(record: BuildRecord, key: PublicKey) -> bool:
    """Whether `record` carries a signature naming this very public key (by key,
    not by name: a key regenerated under the same name has not signed it)."""
    return any(_pub(s) == key.raw for s in record.signatures)


def merge_signatures(*lists: Sequence[Signature]) -> tuple[Signature, ...]:
    """The signatures of several copies of one record, one per signer: a later
    signature by the same public key (by the same name, for one without a `pub`)
    replaces an earlier one. Sorted by name, then public key."""
    merged: dict[str, Signature] = {}
    for signatures in lists:
        for s in signatures:
            merged[s.pub or s.key] = s
    return tuple(sorted(merged.values(), key=lambda s: (s.key, s.pub or "")))


def sign(record: BuildRecord, key: SecretKey) -> BuildRecord:
    """The record with this key's signature added. Each signature names its key's
    name and public key; an earlier signature by the same public key is replaced,
    one by another key of the same name is kept."""
    return record.with_signatures(merge_signatures(record.signatures, [cosign(record, key)]))


def signature_finding(record: BuildRecord, trusted: dict[str, PublicKey], where: str) -> str | None:
    """What an auditor is told about a record no trusted key signed validly (check's
    reason, without the advice for pulling), or None when one did."""
    try:
        check(record, trusted, where)
    except IntegrityError as exc:
        return str(exc).replace("; refused", "").replace(" (trust it with --no-verify-signatures)", "")
    return None


def _verifies(key: PublicKey, entry: Signature, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key.raw).verify(base64.b64decode(entry.sig, validate=True), data)
        return True
    except (InvalidSignature, binascii.Error, ValueError):
        return False


def _trusted_key(entry: Signature, trusted: dict[str, PublicKey]) -> PublicKey | None:
    """The trusted key a signature entry names: by its public key; one from before
    signatures named it (no `pub`) by the key's name."""
    pub = _pub(entry)
    if pub is not None:
        return next((k for k in trusted.values() if k.raw == pub), None)
    return trusted.get(entry.key)


def valid_signers(
    record: BuildRecord, trusted: dict[str, PublicKey], cosignatures: Sequence[Signature] = ()
) -> list[str]:
    """The names of the distinct trusted keys whose signature over the record's
    signed bytes verifies, from the record's own signatures and from co-signatures
    kept beside it (one per signer, see cosignature_name)."""
    data = record.signed_bytes()
    found: dict[bytes, str] = {}
    for entry in [*record.signatures, *cosignatures]:
        key = _trusted_key(entry, trusted)
        if key is not None and key.raw not in found and _verifies(key, entry, data):
            found[key.raw] = key.name
    return sorted(found.values())


def cosignature_name(key: str, public: PublicKey) -> str:
    """Where a remote keeps one signer's co-signature of the record for `key`:
    `sig/<key>/<sha256 of the public key>`. Each signer writes only its own object,
    so co-signing never rewrites the record and two signers never race."""
    import hashlib

    return f"{key}/{hashlib.sha256(public.raw).hexdigest()}"


def cosign(record: BuildRecord, key: SecretKey) -> Signature:
    """This key's signature over the record's signed bytes, as a co-signature object."""
    return Signature(
        key=key.name,
        pub=base64.b64encode(key.public().raw).decode(),
        sig=base64.b64encode(key.sign(record.signed_bytes())).decode(),
    )


def check(record: BuildRecord, trusted: dict[str, PublicKey], where: str) -> str:
    """The name of a trusted key whose signature on `record` is valid; otherwise
    IntegrityError saying why: unsigned; signed only by keys nobody trusts; signed
    by a key that is not the trusted key of its name (regenerated, or an
    impostor); or signed by a trusted key over other bytes (altered). A signature
    is matched to a trusted key by its public key; one from before signatures
    named it (no `pub`) by the key's name."""
    if not record.signatures:
        raise IntegrityError(f"{where}: record is not signed; refused (trust it with --no-verify-signatures)")
    data = record.signed_bytes()
    by_raw = {k.raw: k for k in trusted.values()}
    unknown, other_key, altered = [], [], []
    for entry in record.signatures:
        name = entry.key
        pub = _pub(entry)
        key = by_raw.get(pub) if pub is not None else trusted.get(name)
        if key is None:
            if pub is not None and name in trusted:
                other_key.append(f"{name!r} ({fingerprint(pub)}, not the trusted {fingerprint(trusted[name].raw)})")
            else:
                unknown.append(repr(name))
            continue
        if _verifies(key, entry, data):
            return key.name
        altered.append(repr(key.name))
    if altered:
        raise IntegrityError(
            f"{where}: signature by trusted key {altered[0]} does not verify: the record's bytes "
            "were altered after signing (or the signature forged); refused"
        )
    if other_key:
        raise IntegrityError(
            f"{where}: signed by a key named {other_key[0]}: a different key with a trusted "
            "name (regenerated, or an impostor); refused"
        )
    raise IntegrityError(f"{where}: signed by untrusted key {', '.join(unknown)}; refused")
