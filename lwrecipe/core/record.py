"""The build record: what a build of one key made, signed by its builders. The
one way to read, check, make and write one (its JSON form is canonical_json of
the fields it has). What the signatures are worth is remote/signing's and
trust's; where records are kept, the store's and the remotes'.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from .digests import Sha256, canonical_json
from .documents import parse_json
from .errors import DocumentError, IntegrityError

LIMIT = 4 << 20  # a build record is a few KiB; anything near this is not one
SANDBOXED = "bubblewrap"  # a record's `sandbox` when the build ran in one; "none" otherwise

Digest = Annotated[Sha256, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Part(BaseModel):
    """A part of a record: its fields typed, nothing else allowed, unchangeable.
    A field is written back only when it was there (or given) when the part was
    made, so a record reads and writes back byte for byte."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)

    def document(self) -> dict[str, Any]:
        """The part as plain JSON values: the fields it has, and only those."""
        return self.model_dump(mode="json", exclude_unset=True)


class Blob(_Part):
    """The output, as the compressed archive kept in cas/."""

    sha256: Digest
    size: Annotated[int, Field(ge=0)]
    uncompressed_size: int | None = None
    files: int | None = None


class Signature(_Part):
    """One signer's ed25519 signature over the record's signed bytes: the key's
    name, its public key (absent in signatures from before they named it), the
    signature; all base64 but the name."""

    key: str
    sig: str
    pub: str | None = None

    def to_json(self) -> bytes:
        """A co-signature's bytes, as a remote keeps it beside the record."""
        return canonical_json(self.document())


class SourcePin(_Part):
    kind: str
    sha256: str | None = None
    rev: str | None = None
    strip: int
    dest: str
    unpack: bool


class PatchPin(_Part):
    kind: str
    sha256: str | None = None
    in_source: str | None = None
    strip: int


class ToolPin(_Part):
    sha256: str
    version: str


class Inputs(_Part):
    """The key document the record's key is the hash of (recipes.keys.KeyInputs;
    its document() is that document)."""

    format: int
    name: str
    version: str
    sources: tuple[SourcePin, ...] = Field(strict=False)
    patches: tuple[PatchPin, ...] = Field(strict=False)
    script: str
    env: dict[str, str]
    host_tools: dict[str, ToolPin]
    platform: str
    source_date_epoch: int
    deps: dict[str, str]
    environment: str | None = None
    bootstrap: bool = False


class HostTool(_Part):
    """A host tool the build ran, where it was found (not part of the key)."""

    path: str | None = None
    sha256: str | None = None
    version: str | None = None


class EnvironmentRef(_Part):
    """The dependency whose output was the build's root file system."""

    name: str
    output_id: Digest


class ExecutedOn(_Part):
    """Where a remote-execution build ran (build --executor)."""

    url: str
    action: str
    worker: str
    cached_result: bool


class Substitute(_Part):
    """A --with-recipe stand-in in the build's closure."""

    recipe: str
    recipe_sha256: Digest


class NotARecord(IntegrityError):
    """Bytes or a document that are not a build record."""

    reason = "not-a-record"


class BuildRecord(_Part):
    """A build record. Only key, name, output_id, blob and log are required: a
    record from before a field existed, or a minimal one, is still a record."""

    key: Digest
    name: str
    version: str | None = None
    output_id: Digest
    blob: Blob
    inputs: Inputs | None = None
    recipe_sha256: str | None = None
    host_tools: dict[str, HostTool] = {}
    sandbox: str | None = None
    environment: EnvironmentRef | None = None
    build_image: str | None = None
    lwrecipe_version: str | None = None
    started: str | None = None
    duration_s: float | int | None = None
    log: Digest
    signatures: tuple[Signature, ...] = Field(default=(), strict=False)
    substituted: dict[str, Substitute] = {}
    executor: ExecutedOn | None = None

    @field_validator("signatures", mode="before")
    @classmethod
    def _only_signatures(cls, value: Any) -> Any:
        """An entry that is not a signature counts for nothing: it is dropped, the
        record kept (signatures are not signed: anyone on the way can add one)."""
        if not isinstance(value, list | tuple):
            return value
        kept = []
        for entry in value:
            try:
                kept.append(Signature.model_validate(entry))
            except ValidationError:
                continue
        return tuple(kept)

    @classmethod
    def from_json(cls, data: bytes, where: str, limit: int = LIMIT) -> BuildRecord:
        """The record in `data`, bytes from anywhere (a remote, a cache directory):
        NotARecord, saying why, when they are not one."""
        try:
            document = parse_json(data, where, limit)
        except DocumentError as exc:
            raise NotARecord(f"{where}: not a build record ({exc.message}); refused") from None
        return cls.from_document(document, where)

    @classmethod
    def from_document(cls, document: object, where: str) -> BuildRecord:
        """The record a parsed JSON document is; NotARecord naming the first field
        that is missing or of the wrong type, or every field a record does not have."""
        if not isinstance(document, dict):
            raise NotARecord(f"{where}: not a build record; refused")
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            errors = exc.errors()
        extra = [".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
        if extra:
            raise NotARecord(
                f"{where}: record has fields a build record does not have ({', '.join(sorted(extra))}); refused"
            ) from None
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"])
        what = "missing" if first["type"] == "missing" else f"{first['msg'][:1].lower()}{first['msg'][1:]}"
        raise NotARecord(f"{where}: not a build record: {field}: {what}; refused") from None

    def to_json(self) -> bytes:
        """The record's bytes, as stored and sent: canonical JSON."""
        return canonical_json(self.document())

    def signed_bytes(self) -> bytes:
        """What a signature signs: the canonical JSON of every field but `signatures`,
        so signatures can be added without changing what they sign."""
        return canonical_json(self.model_dump(mode="json", exclude_unset=True, exclude={"signatures"}))

    def with_signatures(self, signatures: tuple[Signature, ...]) -> BuildRecord:
        return self.model_copy(update={"signatures": signatures})

    @property
    def sandboxed(self) -> bool:
        """Whether the output was built in a sandbox: only those are shared."""
        return self.sandbox == SANDBOXED
