"""Whether a remote's build record may be used: it is a record, for the key it is
stored under, of a sandboxed build (parse_record); enough distinct trusted keys
signed it, co-signatures kept beside it counted (enough_signers); and another
builder's record for a key agrees with the output built here (agree). Pure
rules: what a remote holds is read by remote.py, what a signature is worth is
signing.py's.
"""

from __future__ import annotations

from ..core.documents import parse_json
from ..core.errors import DocumentError, IntegrityError
from ..core.record import LIMIT, BuildRecord, Signature
from .signing import PublicKey, check, valid_signers

SIGNATURE_LIMIT = 4 << 10  # a co-signature is about 200 bytes


class TooFewSigners(IntegrityError):
    """A record fewer distinct trusted keys signed than the remote's min_signers."""

    reason = "min-signers"


class BuildersDisagree(IntegrityError):
    """A remote holds another output for the key of a build made here."""

    reason = "builders-disagree"


def parse_record(data: bytes, key: str, where: str) -> BuildRecord:
    """A pulled build record, checked for shape, for naming the key it is stored
    under and for having been built in a sandbox."""
    record = BuildRecord.from_json(data, where, LIMIT)
    if record.key != key:
        raise IntegrityError(f"{where}: record is for key {record.key[:12]}, not {key[:12]}; refused")
    if not record.sandboxed:
        raise IntegrityError(
            f"{where}: built without a sandbox; outputs of unsandboxed builds are never substituted; refused"
        )
    return record


def parse_cosignature(data: bytes, where: str) -> Signature | None:
    """A co-signature a remote keeps beside a record; None when it is not one (a
    malformed one counts for nothing, as an invalid one does)."""
    try:
        entry = parse_json(data, where, SIGNATURE_LIMIT)
    except DocumentError:
        return None
    try:
        return Signature.model_validate(entry)
    except ValueError:  # pydantic's ValidationError
        return None


def cosigns(record: BuildRecord, entry: Signature, public: PublicKey) -> bool:
    """Whether `entry` is `public`'s valid signature of `record`."""
    return bool(valid_signers(record.with_signatures((entry,)), {public.name: public}))


def enough_signers(record: BuildRecord, trusted: dict[str, PublicKey], need: int, where: str) -> list[str]:
    """The trusted keys that signed `record`, at least `need` of them; otherwise
    IntegrityError saying why none counts, or TooFewSigners."""
    signers = valid_signers(record, trusted)
    if not signers:
        check(record, trusted, where)  # raises, saying why no signature counts
    if len(signers) < need:
        raise TooFewSigners(
            f"{where}: output {record.output_id[:12]} is signed by {len(signers)} of the "
            f"{need} trusted keys required ({', '.join(signers)}); min_signers = {need}: "
            "not used until another builder reproduces it and co-signs"
        )
    return signers


def agree(theirs: BuildRecord, ours: BuildRecord, where: str, remote: str) -> None:
    """BuildersDisagree when a remote's record names another output for the key
    than the record built here."""
    if theirs.output_id != ours.output_id:
        raise BuildersDisagree(
            f"{where}: {ours.name}: the remote holds output {theirs.output_id[:12]} for this key, this "
            f"cache {ours.output_id[:12]}: builders disagree; not co-signed (see `lwrecipe challenge "
            f"{ours.name} --remote {remote}`)"
        )
