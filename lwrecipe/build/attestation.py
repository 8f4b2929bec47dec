"""`provenance`: the signed SLSA provenance of a recipe's current output — the one
its build here made, or one made now from its record for a record built here
before provenance existed. A pulled output's provenance is its builder's to make."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import UsageError
from ..remote import provenance
from ..remote.signing import SecretKey
from ..store.store import Store
from .plan import Planned


@dataclass(frozen=True)
class Attestation:
    name: str
    output_id: str
    envelope: bytes  # the DSSE envelope's JSON, as stored


def attestation(store: Store, item: Planned, secret: Callable[[], SecretKey | None]) -> Attestation:
    """The provenance of the planned recipe's output in `store`; `secret` (asked only
    when one is made now) is the key that signs it. UsageError when its current
    inputs were not built here, or were pulled from a remote without provenance."""
    key = item.key
    record = store.read_record(key) if key and store.exists() else None
    if key is None or record is None:
        raise UsageError(
            f"{item.name}: its current inputs were not built in {store.root}; run lwrecipe build {item.name} first"
        )
    data = store.read_provenance(key)
    if data is None:
        pulled = store.pulled_from(key)
        if pulled is not None:
            raise UsageError(
                f"{item.name}: its output was pulled from {pulled}, which had no provenance for it; "
                f"rebuild it here (lwrecipe build {item.name} --check) to make one"
            )
        store.put_provenance(key, provenance.envelope(record, item.recipe, secret()))
        data = store.read_provenance(key)
        assert data is not None
    return Attestation(item.name, record.output_id, data)
