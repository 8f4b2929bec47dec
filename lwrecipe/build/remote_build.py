"""Building one recipe on a REAPI executor (`build --executor grpc://…`).

The build directory is staged here exactly as for a local build (sources laid
out, patches applied), then sent as one Action whose input root is the whole
file system the build sees locally:

    /                 the environment's tree (a bootstrap recipe: its own sources),
                      but for the names the sandbox makes (build, deps, dev, proc, tmp)
    /build/src        the patched source tree        /build/out, home, tmp  empty
    /build/.lwrecipe/script.sh                       the recipe's script
    /deps/<name>      each dependency's output       /tmp                   empty

The Command runs the script as a local build does (`bash -euo pipefail`, in
/build/src, stderr into stdout so the log reads as locally) with the same
variables, in working directory `build` with `out` its output directory;
platform properties ask for Linux on x86-64 as uid/gid 1000 with no network.
The result is checked as a local build's output is: the tree is written back
from CAS (every blob checked), its hard links restored from a list the Command
makes, and packed here, so its output id is computed from what came back. The
log is kept as any build's. A recipe on host tools has nothing pinned to send
and builds here (engine.py decides).
"""

from __future__ import annotations

import os
import shlex
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import BuildFailed
from ..core.record import SANDBOXED, BuildRecord, ExecutedOn
from ..inputs.sources import Fetch
from ..remote.execution import Executor
from ..remote.merkle import InputTree, Node
from ..store.outputs import MERKLE, SHARED
from ..store.store import Store
from .builder import BuildOptions, build_directory, build_limits, finish, script_failed, stage
from .plan import Planned
from .sandbox import BUILD_USER, CONTROL, RESERVED_ROOTS, Job, Layout, environment, require_sandbox
from .supervise import Limits, Lines, size_text

LINKS = f"{CONTROL}/links"  # in the working directory: the output's hard links, as `<inode> <path>\0`
INPUT_LINKS = f"{CONTROL}/input-links"  # the input's hard links, as `<path>\0<path to link to it>\0`
_COMMAND = (
    "exec 2>&1\n"
    # CAS has no hard links: those of the sources, dependencies and environment are made again
    "while IFS= read -r -d '' first && IFS= read -r -d '' other; do\n"
    '  ln -f -- "$first" "$other" || exit\n'
    "done < /build/" + INPUT_LINKS + "\n"
    "cd /build/src || exit\n"
    "unset OLDPWD SHLVL\n"  # the script sees the variables of a local build, not this shell's
    "/bin/bash -euo pipefail /build/.lwrecipe/script.sh\n"
    "status=$?\n"
    "if [ -d /build/out ] && [ ! -L /build/out ] && command -v find >/dev/null; then\n"
    "  cd /build && find out -type f -links +1 -printf '%i %P\\0' > /build/" + LINKS + "\n"
    "fi\n"
    "exit $status\n"
)


def platform(protos: Any) -> Any:
    """What the worker's sandbox must be: Linux on x86-64, the build user, no network."""
    _, uid, gid = BUILD_USER
    properties = {"ISA": "x86-64", "OSFamily": "linux", "unixGID": str(gid), "unixUID": str(uid)}
    return protos.Platform(
        properties=[protos.Platform.Property(name=k, value=v) for k, v in sorted(properties.items())]
    )


def build_remote(
    store: Store,
    executor: Executor,
    frozen: dict[Any, Any],
    item: Planned,
    fetched: Fetch,
    deps: dict[str, Path],
    opts: BuildOptions,
    log_dir: Path,
    keep_record: bool = True,
    substituted: dict[str, dict[str, str]] | None = None,
    on_stage: Callable[[str], None] = lambda stage: None,
    fresh: bool = False,
) -> BuildRecord:
    """Build `item` on the executor and store its output and record here; as
    builder.build_one does for a local build. `fresh` (--rebuild, --check): the
    server's action cache is not asked, the Action really runs again."""
    assert item.key is not None
    recipe = item.recipe
    started = time.time()
    bwrap = require_sandbox(False)  # patches for a build on an environment are applied in it, here
    with build_directory(store, recipe.name, "remote") as top:
        layout = Layout(top)
        job = stage(item, fetched, deps, layout, bwrap, opts.jobs, opts.unpack)
        assert job.root is not None, "engine.py builds recipes on host tools here"
        saved = store.root / MERKLE / job.root.name if job.root.parent == store.root / SHARED else None
        tree, action_digest = _action(executor, frozen, job, layout, saved)
        on_stage("uploading")
        executor.upload(tree)
        response = executor.execute(action_digest, on_stage, fresh=fresh)
        result = response.result
        worker = result.execution_metadata.worker
        on = f" on {executor.name}" + (f" (worker {worker})" if worker else "")
        exceeded = _write_log(executor, result, layout.log, build_limits(recipe, opts.limits))
        if exceeded is not None:
            raise script_failed(store, top, log_dir, recipe.name, layout.log, f"build {exceeded}{on}", opts)
        on_output = opts.on_output
        if on_output is not None:
            _say_lines(layout.log, lambda line: on_output(recipe.name, line.decode(errors="replace")))
        if result.exit_code != 0:
            raise script_failed(
                store,
                top,
                log_dir,
                recipe.name,
                layout.log,
                f"build script exited with status {result.exit_code}{on}",
                opts,
            )
        out = _output(executor, result, top / "returned", recipe.name)
        return finish(
            store,
            item,
            out,
            layout.log,
            SANDBOXED,
            started,
            opts,
            log_dir,
            keep_record,
            substituted,
            executor=ExecutedOn(
                url=executor.backend.spec.url,
                action=f"{action_digest.hash}/{action_digest.size_bytes}",
                worker=worker,
                cached_result=response.cached_result,
            ),
        )


def _action(
    executor: Executor, frozen: dict[Any, Any], job: Job, layout: Layout, saved: Path | None
) -> tuple[InputTree, Any]:
    """The Action of the staged build, and the tree of every blob it names (`saved`:
    where the environment's Merkle tree is kept between runs)."""
    assert job.root is not None
    protos = executor.re
    tree = InputTree(protos, frozen)
    links = _hard_links(layout.src, "/build/src") + [
        pair for name, path in sorted(job.deps.items()) for pair in _hard_links(path, f"/deps/{name}")
    ]
    if (job.root, "links") not in frozen:
        frozen[(job.root, "links")] = _hard_links(job.root, "", exclude=RESERVED_ROOTS)
    links += frozen[(job.root, "links")]
    work = {name: layout.work / name for name in os.listdir(layout.work)}
    node: dict[str, Node] = {
        "build": {
            **work,
            CONTROL: {"script.sh": job.script.encode(), "input-links": b"".join(os.fsencode(p) + b"\0" for p in links)},
        },
        "deps": {name: path for name, path in sorted(job.deps.items())},
        "tmp": {},
    }
    root = tree.root(node, base=job.root, exclude=RESERVED_ROOTS, saved=saved)
    command = protos.Command(
        arguments=["/bin/bash", "-c", _COMMAND],
        environment_variables=[
            protos.Command.EnvironmentVariable(name=k, value=v) for k, v in sorted(environment(job, True).items())
        ],
        output_files=[LINKS],
        output_directories=["out"],
        output_paths=sorted(["out", LINKS]),
        working_directory="build",
        platform=platform(protos),
    )
    command_digest = tree.digest(command.SerializeToString(deterministic=True))
    action = protos.Action(
        command_digest=command_digest, input_root_digest=root, do_not_cache=False, platform=platform(protos)
    )
    return tree, tree.digest(action.SerializeToString(deterministic=True))


def _write_log(executor: Executor, result: Any, log: Path, limits: Limits) -> str | None:
    """The build's stdout then stderr, written to `log` as a local build's; a log
    over --max-log-size is not fetched at all (what is said instead is returned)."""
    parts = [
        (result.stdout_raw, result.stdout_digest if result.HasField("stdout_digest") else None),
        (result.stderr_raw, result.stderr_digest if result.HasField("stderr_digest") else None),
    ]
    size = sum(len(raw) or (digest.size_bytes if digest is not None else 0) for raw, digest in parts)
    cap = limits.max_log_size
    with open(log, "wb") as fh:
        if cap is not None and size > cap.value:
            fh.write(f"(the executor's log of {size} bytes is over {size_text(cap.value)}; not fetched)\n".encode())
            return f"log exceeded {size_text(cap.value)} ({cap.origin})"
        for raw, digest in parts:
            fh.write(bytes(raw) if raw or digest is None else executor.read(digest))
    return None


def _say_lines(log: Path, say: Callable[[bytes], None]) -> None:
    lines = Lines(say)
    with open(log, "rb") as fh:
        while data := fh.read(1 << 20):
            lines.feed(data)
    lines.close()


def _output(executor: Executor, result: Any, dest: Path, recipe: str) -> Path:
    """The output directory the result names, written into `dest`, hard links as built."""
    dirs = [d for d in result.output_directories if d.path == "out"]
    if not dirs:
        if any(s.path == "out" for s in [*result.output_symlinks, *result.output_directory_symlinks]):
            raise BuildFailed(recipe, "the output /build/out is not a directory (a symlink); refused")
        raise BuildFailed(recipe, "the output /build/out was removed by the build")
    executor.materialise(dirs[0].tree_digest, dest)
    links = next((f for f in result.output_files if f.path == LINKS), None)
    if links is not None:
        _relink(dest, executor.read(links.digest), recipe)
    return dest


def _hard_links(root: Path, inside: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The files of `root` that are one file under several names, as pairs of paths
    (where `root` is at `inside`): the first in byte order, then each other name."""
    groups: dict[tuple[int, int], list[str]] = {}
    for top, dirs, files in os.walk(root):
        if top == str(root):
            dirs[:] = [d for d in dirs if d not in exclude]
        for name in files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                groups.setdefault((st.st_dev, st.st_ino), []).append(os.path.relpath(path, root))
    pairs = []
    for names in groups.values():
        names.sort(key=os.fsencode)
        for other in names[1:]:
            pairs += [f"{inside}/{names[0]}", f"{inside}/{other}"]
    return pairs


def _relink(root: Path, listing: bytes, recipe: str) -> None:
    """Make the files the build had hard-linked one file again: the first path in
    byte order stays, the others become links to it (as the archive stores them)."""
    groups: dict[str, list[str]] = {}
    for entry in listing.split(b"\0"):
        if entry:
            inode, _, rel = entry.decode("utf-8", "surrogateescape").partition(" ")
            groups.setdefault(inode, []).append(rel)
    real_root = os.path.realpath(root)
    for paths in groups.values():
        if len(paths) < 2:
            continue
        paths.sort(key=os.fsencode)
        for rel in paths:
            path = root / rel
            # a file of the tree itself: no `..`, and no symlink on the way (it could lead out of the tree)
            if (
                not rel
                or Path(rel).is_absolute()
                or ".." in Path(rel).parts
                or os.path.realpath(path) != os.path.join(real_root, rel)
                or not path.is_file()
            ):
                raise BuildFailed(
                    recipe,
                    f"the executor's list of hard links names {shlex.quote(rel)}, "
                    "which is not a file of the output; refused",
                )
        for rel in paths[1:]:
            (root / rel).unlink()
            os.link(root / paths[0], root / rel)
