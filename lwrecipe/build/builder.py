"""Running one recipe's build and recording it: source tree, patches, sandbox,
packing the output, the log and the build record.

Deciding what to build and in which order is engine.py's; this module builds
exactly one planned recipe whose inputs are fetched and dependencies restored.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .. import __version__
from ..core import faults
from ..core.digests import Sha256
from ..core.errors import BuildFailed, MissingToolError, SandboxUnavailable, StoreError
from ..core.files import remove_tree
from ..core.record import SANDBOXED, Blob, BuildRecord, EnvironmentRef, ExecutedOn, HostTool, Inputs, Substitute
from ..inputs.entries import UnpackLimits
from ..inputs.gitsrc import read_member
from ..inputs.patch import PatchFile, apply_series, check_series, not_applied, patch_argv
from ..inputs.sources import Fetch, lay_out
from ..recipes.recipe import Recipe
from ..recipes.schema import FilePatch, GitSource, SourcePatch, UrlPatch
from ..remote import provenance
from ..remote.signing import SecretKey, sign
from ..store.outputs import Packed, pack, put_log
from ..store.store import Store
from .plan import Planned
from .sandbox import BUILD, CONTROL, ENV_PATH, Job, Layout, require_sandbox, run
from .spawn import SPAWN_PAUSES, SpawnRefused
from .supervise import Limits, tail

TAIL_LINES = 40
IMAGE_ENV = "LWRECIPE_BUILD_IMAGE"


@dataclass(frozen=True)
class BuildOptions:
    jobs: int
    no_sandbox: bool = False  # the user allowed building without bubblewrap
    secret: SecretKey | None = None  # signs the build records made here
    keep_failed: bool = False  # a failed build's directory is kept (cache/failed/<recipe>)
    on_output: Callable[[str, str], None] | None = None  # (recipe, line) for each line the build writes (build -v)
    limits: Limits = Limits()  # --timeout, --max-silent-time, ... (a recipe's own timeout can only lower them)
    unpack: UnpackLimits = UnpackLimits()  # the user's [unpack]: what one source archive may unpack to


def patch_files(item: Planned, fetched: Fetch, where: Path) -> list[PatchFile]:
    recipe = item.recipe
    files = []
    for i, patch in enumerate(recipe.doc.patches):
        if isinstance(patch, FilePatch):
            path, shown = recipe.root / patch.file, patch.file
        elif isinstance(patch, UrlPatch):
            path, shown = fetched.files[Sha256(patch.sha256)].path, patch.url
        else:
            assert isinstance(patch, SourcePatch)
            src = recipe.source_named(patch.source)
            assert isinstance(src, GitSource)
            data = read_member(fetched.trees[src.rev].path, patch.path)
            path, shown = where / f"{i:04d}.patch", f"{patch.source}:{patch.path}"
            path.write_bytes(data or b"")
        files.append(PatchFile(f"patches[{i}] ({shown})", path, patch.strip))
    return files


def build_one(
    store: Store,
    item: Planned,
    fetched: Fetch,
    deps: dict[str, Path],
    opts: BuildOptions,
    log_dir: Path,
    keep_record: bool = True,
    substituted: dict[str, dict[str, str]] | None = None,
) -> BuildRecord:
    """Build `item` and store its output and record under its key; returns the record.
    With keep_record=False (a `--check` rebuild) the output blob is stored but the
    record is only returned, so the cached record stays the reference. `substituted`:
    the --with-recipe stand-ins in its closure, noted in the record (not in the key,
    which already covers every byte of them)."""
    assert item.key is not None and item.inputs is not None
    recipe = item.recipe
    started = time.time()
    bwrap = require_sandbox(opts.no_sandbox)
    with build_directory(store, recipe.name, "build") as top:
        layout = Layout(top)
        job = stage(item, fetched, deps, layout, bwrap, opts.jobs, opts.unpack)
        say = opts.on_output
        on_line = None if say is None else (lambda line: say(recipe.name, line.decode(errors="replace")))
        try:
            ended = run(job, bwrap, layout.log, build_limits(recipe, opts.limits), on_line)
        except SpawnRefused as exc:
            raise BuildFailed(
                recipe.name,
                f"cannot start the build: {exc.strerror} (the kernel refused it {len(SPAWN_PAUSES) + 1} times)",
            ) from None
        if ended.limit is not None:
            raise script_failed(store, top, log_dir, recipe.name, layout.log, f"build {ended.limit}", opts)
        if ended.status != 0:
            raise script_failed(
                store, top, log_dir, recipe.name, layout.log, f"build script exited with status {ended.status}", opts
            )
        return finish(
            store,
            item,
            output_dir(recipe.name, layout),
            layout.log,
            SANDBOXED if bwrap else "none",
            started,
            opts,
            log_dir,
            keep_record,
            substituted,
        )


def build_limits(recipe: Recipe, limits: Limits) -> Limits:
    """The user's limits with the recipe's own timeout, which can only lower them."""
    return limits.with_timeout(recipe.doc.build.timeout, f"build.timeout in {recipe.display}")


@contextlib.contextmanager
def build_directory(store: Store, recipe: str, prefix: str) -> Iterator[Path]:
    """A fresh build directory in the store's tmp/, removed afterwards unless a
    failure kept it (keep_failed moves it away); a file system error on the way is
    one StoreError naming the recipe."""
    store.ensure()
    top = Path(tempfile.mkdtemp(dir=store.root / "tmp", prefix=f"{prefix}-{recipe}-"))
    try:
        yield top
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise StoreError(f"{recipe}: cannot write the build or its output: {exc.strerror or exc}{where}") from None
    finally:
        if top.exists():
            remove_tree(top)


def script_failed(
    store: Store, top: Path, log_dir: Path, recipe: str, log: Path, why: str, opts: BuildOptions
) -> BuildFailed:
    """The failure of a build whose script failed or passed a limit: its log kept
    in log_dir (copied, never read whole), its directory too with --keep-failed."""
    with open_log(log) as fh:
        kept = _keep_log(fh, log_dir, recipe)
        last = tail(fh, TAIL_LINES)
    if opts.keep_failed:
        why += f"; its build directory is kept in {keep_failed(store, top, recipe)}"
    return BuildFailed(recipe, why, str(kept), last)


def finish(
    store: Store,
    item: Planned,
    out: Path,
    log: Path,
    sandbox: str,
    started: float,
    opts: BuildOptions,
    log_dir: Path,
    keep_record: bool,
    substituted: dict[str, dict[str, str]] | None,
    executor: ExecutedOn | None = None,
) -> BuildRecord:
    """Pack a successful build's output, store it and its log, and make (and,
    with keep_record, store) its record."""
    (log_dir / f"{item.name}.log").unlink(missing_ok=True)  # an earlier failure's: no longer the last build
    packed = pack(store, out, item.recipe.doc.build.source_date_epoch)
    with open_log(log) as fh:
        log_blob = put_log(store, fh)
    record = _make_record(item, packed, log_blob, sandbox, started, opts, substituted, executor)
    if keep_record:
        _keep(store, item, record, opts)
    return record


def _make_record(
    item: Planned,
    packed: Packed,
    log_blob: Sha256,
    sandbox: str,
    started: float,
    opts: BuildOptions,
    substituted: dict[str, dict[str, str]] | None,
    executor: ExecutedOn | None = None,
) -> BuildRecord:
    """The build record of `item` built into `packed`, signed when opts has a key.
    `executor` and `substituted` are there only when the build had them."""
    assert item.key is not None and item.inputs is not None
    recipe = item.recipe
    record = BuildRecord(
        key=item.key,
        name=recipe.name,
        version=recipe.version,
        output_id=packed.output_id,
        blob=Blob(sha256=packed.blob, size=packed.blob_size, uncompressed_size=packed.size, files=packed.files),
        inputs=Inputs.model_validate(item.inputs.document()),
        recipe_sha256=recipe.file_sha256,
        host_tools={t.name: HostTool(path=str(t.path), sha256=t.sha256, version=t.version) for t in item.tools},
        sandbox=sandbox,
        environment=(
            EnvironmentRef(name=recipe.environment, output_id=dict(item.inputs.deps)[recipe.environment])
            if recipe.environment
            else None
        ),
        build_image=os.environ.get(IMAGE_ENV) or None,
        lwrecipe_version=__version__,
        started=datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration_s=round(time.time() - started, 3),
        log=log_blob,
    )
    if executor is not None:
        record = record.model_copy(update={"executor": executor})
    if substituted:
        record = record.model_copy(
            update={"substituted": {n: Substitute.model_validate(s) for n, s in substituted.items()}}
        )
    if opts.secret is not None:
        record = sign(record, opts.secret)
    return record


def _keep(store: Store, item: Planned, record: BuildRecord, opts: BuildOptions) -> None:
    """Store the record (and its provenance) under its key."""
    faults.point("record")
    store.put_record(record)
    store.put_provenance(record.key, provenance.envelope(record, item.recipe, opts.secret))


def stage(
    item: Planned,
    fetched: Fetch,
    deps: dict[str, Path],
    layout: Layout,
    bwrap: str | None,
    jobs: int,
    unpack: UnpackLimits = UnpackLimits(),
) -> Job:
    """A build directory as the build script gets it: sources laid out, patches
    applied, and the job that runs in it. `deps` holds every dependency's output
    (the environment's included)."""
    recipe = item.recipe
    layout.create()
    lay_out(recipe, fetched, layout.src, unpack)
    job = build_job(item, deps, layout, bwrap, jobs)
    patches = patch_files(item, fetched, layout.patches)
    if job.root is None:
        patch_tool = next((str(t.path) for t in item.tools if t.name == "patch"), "patch")
        apply_series(recipe.name, patches, layout.src, patch_tool)
    elif patches:
        assert bwrap is not None  # environment_root() refused a root build without bubblewrap
        _patch_in_environment(recipe.name, patches, layout, job.root, bwrap, recipe.doc.build.source_date_epoch)
    return job


def build_job(item: Planned, deps: dict[str, Path], layout: Layout, bwrap: str | None, jobs: int) -> Job:
    """The job of a build in `layout`: script, variables, tools, dependencies and the
    root it runs on (also what `shell` enters, over a kept or a fresh directory)."""
    recipe, build = item.recipe, item.recipe.doc.build
    root = environment_root(recipe, deps, layout, bwrap)
    return Job(
        layout=layout,
        script=build.script,
        env=dict(build.env),
        tools={t.name: t.path for t in item.tools},
        deps={d: p for d, p in deps.items() if d != recipe.environment},
        jobs=jobs,
        source_date_epoch=build.source_date_epoch,
        root=root,
    )


FAILED = "failed"  # beside cas/ and ac/: build directories kept by --keep-failed, one per recipe


def kept_failure(store: Store, recipe: str) -> Path:
    return store.root / FAILED / recipe


def keep_failed(store: Store, top: Path, recipe: str) -> Path:
    """Keep a failed build's directory (replacing the one an earlier failure left)."""
    dest = kept_failure(store, recipe)
    dest.parent.mkdir(exist_ok=True)
    if dest.exists():
        remove_tree(dest)
    os.replace(top, dest)
    return dest


def environment_root(recipe: Recipe, deps: dict[str, Path], layout: Layout, bwrap: str | None) -> Path | None:
    """The tree a recipe builds on (its environment's output, or for a bootstrap its
    own sources), checked to hold the tools it names; None for a host-tool build."""
    if not recipe.pinned_root:
        return None
    what = f"the environment {recipe.environment!r}" if recipe.environment else "its own sources"
    if bwrap is None:
        raise SandboxUnavailable(
            f"{recipe.name}: a build on {what} needs bubblewrap (`apt-get install "
            "bubblewrap`); --no-sandbox cannot give it a root file system"
        )
    root = deps[recipe.environment] if recipe.environment else layout.src
    for tool in recipe.doc.build.host_tools:
        if not any(os.path.lexists(root / d.lstrip("/") / tool) for d in ENV_PATH.split(":")):  # the build's PATH
            raise MissingToolError(recipe.name, tool, None, f"in {what}")
    return root


def _patch_in_environment(
    recipe: str, patches: list[PatchFile], layout: Layout, root: Path, bwrap: str, source_date_epoch: int
) -> None:
    """Apply the series with the environment's own patch, inside the sandbox, so the
    host's patch is neither used nor keyed. Each patch is checked first, as on the host."""
    check_series(recipe, patches)
    inside = []
    for i, patch in enumerate(patches):
        name = f"{i:04d}.patch"
        if patch.path != layout.patches / name:
            shutil.copyfile(patch.path, layout.patches / name)
        argv = patch_argv("patch", patch.strip, str(BUILD / "src"), str(BUILD / CONTROL / "patches" / name))
        inside.append(f"echo 'lwrecipe: patch {i}'\n{shlex.join(argv)}\n")
    log = layout.top / "patch.log"
    ended = run(Job(layout, "".join(inside), {}, {}, {}, 1, source_date_epoch, root), bwrap, log)
    if ended.status != 0:
        with open_log(log) as fh:
            output = tail(fh, 1 << 20)
        number, _, rest = output.rpartition("lwrecipe: patch ")[2].partition("\n")
        raise not_applied(recipe, patches[int(number) if number.isdigit() else 0], rest)


@contextlib.contextmanager
def open_log(log: Path) -> Iterator[BinaryIO]:
    """The log lwrecipe wrote, never a file a link (or anything but a regular
    file) put in its place; read as a stream."""
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        yield io.BytesIO(b"")
        return
    except OSError:  # ELOOP: a symlink where the log was
        yield io.BytesIO(b"(the build replaced its log with a link; not read)\n")
        return
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            yield io.BytesIO(b"(the build replaced its log; not read)\n")
        else:
            yield fh


def output_dir(recipe: str, layout: Layout) -> Path:
    """$LW_OUT as the build left it, refused unless it is still a real directory:
    a link there would pack whatever it points to."""
    try:
        mode = os.lstat(layout.out).st_mode
    except FileNotFoundError:
        raise BuildFailed(recipe, "the output /build/out was removed by the build") from None
    if not stat.S_ISDIR(mode):
        kind = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
        raise BuildFailed(recipe, f"the output /build/out is not a directory ({kind}); refused")
    return layout.out


def _keep_log(log: BinaryIO, log_dir: Path, name: str) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    kept = log_dir / f"{name}.log"
    kept.unlink(missing_ok=True)
    with kept.open("xb") as out:
        shutil.copyfileobj(log, out, 1 << 20)
    return kept
