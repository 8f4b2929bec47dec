"""SLSA provenance for every output: an in-toto Statement v1 whose subject is the
output archive (by its output id) and its compressed blob, whose predicate is SLSA
Provenance v1, signed as a DSSE envelope with the ed25519 key that signs records.

Everything in it comes from the build record (what the key covers, so every digest
can be checked against the store) and, where the recipe is at hand, the URLs its
inputs were pinned from. Built with the in-toto project's libraries
(in-toto-attestation's protobuf types, securesystemslib's DSSE), imported only
when a provenance is made or read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..core.documents import parse_json
from ..core.errors import DocumentError, IntegrityError
from ..core.record import BuildRecord, Inputs
from .signing import PublicKey, SecretKey

if TYPE_CHECKING:
    from ..recipes.recipe import Recipe

PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
ENVELOPE_LIMIT = 4 << 20  # a signed provenance statement is a few KiB; as much as a build record
BUILD_TYPE = "urn:lwrecipe:build-type:recipe:v1"  # what the parameters mean: docs/audit.md, "Provenance"
BUILDER = "urn:lwrecipe:builder"  # + ":" + the signing key's name, when there is one


def _resource(name: str, digest: dict[str, str], uri: str = "", **annotations: Any) -> Any:
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

    return ResourceDescriptor(name=name, uri=uri, digest=digest, annotations=annotations or None).pb


def _declared(pinned: list[Any], declared: list[Any] | None) -> list[Any]:
    """What the recipe declares for each pinned input, in the record's order; Nones
    when the recipe is not at hand (or is not the one that was built)."""
    return declared if declared is not None and len(declared) == len(pinned) else [None] * len(pinned)


def _sources(inputs: Inputs, recipe: Recipe | None) -> list[Any]:
    from ..recipes.schema import DebSource, GitSource, PathSource, UrlSource

    pinned = list(inputs.sources)
    found = []
    for i, (pin, source) in enumerate(
        zip(pinned, _declared(pinned, list(recipe.doc.sources) if recipe is not None else None), strict=True)
    ):
        kind = pin.kind
        uri, name = "", f"sources[{i}]"
        if isinstance(source, (UrlSource, DebSource)):
            uri, name = str(source.url), source.basename
        elif isinstance(source, GitSource):
            uri, name = f"git+{source.git}@{source.rev}", source.name or source.git.rstrip("/").rsplit("/", 1)[-1]
        elif isinstance(source, PathSource):
            name = str(source.path)
        digest = {"gitCommit": pin.rev or ""} if kind == "git" else {"sha256": pin.sha256 or ""}
        found.append(_resource(name, digest, uri, kind=kind, dest=pin.dest))
    return found


def _patches(inputs: Inputs, recipe: Recipe | None) -> list[Any]:
    from ..recipes.schema import FilePatch, UrlPatch

    pinned = list(inputs.patches)
    found = []
    for i, (pin, patch) in enumerate(
        zip(pinned, _declared(pinned, list(recipe.doc.patches) if recipe is not None else None), strict=True)
    ):
        uri, name = "", f"patches[{i}]"
        if isinstance(patch, FilePatch):
            name = str(patch.file)
        elif isinstance(patch, UrlPatch):
            uri, name = str(patch.url), str(patch.url).rsplit("/", 1)[-1]
        if pin.kind == "source":  # a file inside a pinned git source: pinned by its commit
            found.append(_resource(pin.in_source or "", {}, kind="source-patch"))
            continue
        found.append(_resource(name, {"sha256": pin.sha256 or ""}, uri, kind="patch"))
    return found


def statement(record: BuildRecord, recipe: Recipe | None = None, builder: str | None = None) -> dict[str, Any]:
    """The in-toto Statement (as JSON-ready data) for a build record; a record
    without what provenance states (one from before those fields) has none."""
    from google.protobuf import json_format
    from google.protobuf.struct_pb2 import Struct
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2 as slsa
    from in_toto_attestation.v1.statement import Statement

    name, version, inputs, started_at = record.name, record.version, record.inputs, record.started
    if inputs is None or started_at is None or version is None:
        raise IntegrityError(f"{name}: its record ({record.key[:12]}) is too old to state provenance")
    subjects = [
        _resource(f"{name}-{version}.tar", {"sha256": record.output_id}),
        _resource(f"{name}-{version}.tar.zst", {"sha256": record.blob.sha256}),
    ]
    dependencies = [*_sources(inputs, recipe), *_patches(inputs, recipe)]
    dependencies += [
        _resource(dep, {"sha256": output_id}, kind="dependency") for dep, output_id in sorted(inputs.deps.items())
    ]
    if record.environment:
        env = record.environment
        dependencies.append(_resource(f"environment:{env.name}", {"sha256": env.output_id}, kind="build-environment"))
    dependencies += [
        _resource(
            f"host-tool:{tool}",
            {"sha256": info.sha256 or ""},
            info.path or "",
            kind="host-tool",
            version=info.version or "",
        )
        for tool, info in sorted(record.host_tools.items())
    ]
    external = Struct()
    external.update(
        {
            "recipe": {
                "name": name,
                "version": version,
                "sha256": record.recipe_sha256,
                **({"path": recipe.display} if recipe is not None else {}),
            },
            "key": record.key,
        }
    )
    internal = Struct()
    internal.update(
        {
            "platform": inputs.platform,
            "source_date_epoch": inputs.source_date_epoch,
            "sandbox": record.sandbox,
            "script": inputs.script,
            "env": inputs.env,
            **({"substituted": {n: s.document() for n, s in record.substituted.items()}} if record.substituted else {}),
            **({"executor": record.executor.document()} if record.executor else {}),
        }
    )
    started = datetime.strptime(started_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    metadata = slsa.BuildMetadata(invocation_id=record.key)
    metadata.started_on.FromDatetime(started)
    metadata.finished_on.FromDatetime(started + timedelta(seconds=float(record.duration_s or 0)))
    provenance = slsa.Provenance(
        build_definition=slsa.BuildDefinition(
            build_type=BUILD_TYPE,
            external_parameters=external,
            internal_parameters=internal,
            resolved_dependencies=dependencies,
        ),
        run_details=slsa.RunDetails(
            builder=slsa.Builder(
                id=f"{BUILDER}:{builder}" if builder else BUILDER,
                version={"lwrecipe": record.lwrecipe_version or ""},
            ),
            metadata=metadata,
            byproducts=[_resource("build.log.zst", {"sha256": record.log}, kind="log")],
        ),
    )
    made = Statement(subjects, PREDICATE_TYPE, json_format.MessageToDict(provenance))
    made.validate()
    return json_format.MessageToDict(made.pb)


def _ssl_key(public: PublicKey) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]  # signer/__init__ re-exports it without __all__; _key is private

    return SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(public.raw))


def envelope(record: BuildRecord, recipe: Recipe | None, secret: SecretKey | None) -> dict[str, Any]:
    """The DSSE envelope of the record's statement, signed when there is a key."""
    from securesystemslib.dsse import Envelope

    payload = json.dumps(
        statement(record, recipe, secret.name if secret else None), sort_keys=True, separators=(",", ":")
    ).encode()
    made = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    if secret is not None:
        sign_envelope(made, secret)
    return made.to_dict()


def sign_envelope(made: Any, secret: SecretKey) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]  # as SSlibKey above; _crypto_signer is private

    signer = CryptoSigner(Ed25519PrivateKey.from_private_bytes(secret.seed), _ssl_key(secret.public()))
    made.sign(signer)


def read_envelope(data: bytes, record: BuildRecord, trusted: dict[str, PublicKey] | None, where: str) -> dict[str, Any]:
    """A stored or pulled envelope, checked: DSSE of an in-toto statement whose
    subject is the record's output id and blob, signed by a trusted key when
    `trusted` is given. Returns the envelope's data."""
    from securesystemslib.dsse import Envelope

    try:
        document = parse_json(data, where, ENVELOPE_LIMIT)
        made = Envelope.from_dict(document if isinstance(document, dict) else {})
        stated = parse_json(made.payload, f"{where}: payload", ENVELOPE_LIMIT)
    except DocumentError as exc:
        raise IntegrityError(f"{where}: not a DSSE envelope of an in-toto statement ({exc.message}); refused") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{where}: not a DSSE envelope of an in-toto statement ({exc!r}); refused") from None
    if (
        made.payload_type != PAYLOAD_TYPE
        or not isinstance(stated, dict)
        or stated.get("predicateType") != PREDICATE_TYPE
    ):
        raise IntegrityError(f"{where}: not an in-toto statement of SLSA provenance; refused")
    subjects = stated.get("subject")
    digests = {
        d.get("sha256")
        for s in (subjects if isinstance(subjects, list) else [])
        if isinstance(s, dict) and isinstance(d := s.get("digest"), dict) and isinstance(d.get("sha256"), str)
    }
    if digests != {record.output_id, record.blob.sha256}:
        raise IntegrityError(f"{where}: its subject is not output {record.output_id[:12]}; refused")
    if trusted is not None:
        from securesystemslib.exceptions import VerificationError

        keys = [_ssl_key(k) for k in trusted.values()]
        try:
            made.verify(keys, 1)
        except (VerificationError, ValueError, TypeError):
            raise IntegrityError(f"{where}: no trusted key's signature on it verifies; refused") from None
    return made.to_dict()


def signed_by_key(data: dict[str, Any], public: PublicKey) -> bool:
    return _ssl_key(public).keyid in {s.get("keyid") for s in data.get("signatures", [])}


def add_signature(data: dict[str, Any], secret: SecretKey) -> dict[str, Any]:
    from securesystemslib.dsse import Envelope

    made = Envelope.from_dict(json.loads(json.dumps(data)))  # from_dict takes its argument apart
    sign_envelope(made, secret)
    return made.to_dict()
