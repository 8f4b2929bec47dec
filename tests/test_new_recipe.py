"""new without the command line: what it refuses before downloading, and a skeleton
written from an archive a local server serves (removed again if it does not load)."""

from __future__ import annotations

import io
import tarfile

import pytest

from lwrecipe.core.errors import UsageError
from lwrecipe.inputs.fetch import make_client
from lwrecipe.inputs.pinning import plan_new, write_new
from lwrecipe.recipes.recipe import load_recipe
from lwrecipe.store.store import Store
from tests.conftest import Project
from tests.servers import fault_server


def archive(top: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"all:\n\ttrue\n"
        info = tarfile.TarInfo(f"{top}/Makefile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, url, version, message",
    [
        ("Hello", "https://example.org/hello-1.0.tar.gz", None, "'Hello' is not a recipe name"),
        ("hello", "https://example.org/hello.tar.gz", None, "no version in the file name"),
        ("old", "https://example.org/old-1.0.tar.gz", None, "recipes/old.toml: already exists"),
    ],
)
def test_what_new_refuses_before_downloading(
    project: Project, name: str, url: str, version: str | None, message: str
) -> None:
    project.recipe("old", "")
    with pytest.raises(UsageError, match=message):
        plan_new(project.root, name, url, version)


def test_the_version_is_given_or_guessed_and_the_environment_found(project: Project) -> None:
    assert plan_new(project.root, "hello", "https://example.org/hello.tar.gz", "2").version == "2"
    guessed = plan_new(project.root, "hello", "https://example.org/hello-1.2.tar.gz", None)
    assert guessed.version == "1.2" and guessed.environment is None
    assert guessed.path == project.root / "recipes" / "hello.toml"
    project.recipe("buildenv", "")
    assert plan_new(project.root, "hello", "https://example.org/hello-1.2.tar.gz", None).environment == "buildenv"


def test_a_skeleton_is_written_pinned_and_loads(project: Project) -> None:
    store = Store(project.root / "cache").ensure()
    with fault_server() as server, make_client() as client:
        url = server.add("/hello-1.0.tar.gz", archive("hello-1.0"))
        new = plan_new(project.root, "hello", url, None)
        written = write_new(new, store, client)
    assert new.path.read_text() == written.text and written.what == "a Makefile"
    assert store.has("sources", written.sha) and store.path("sources", written.sha).stat().st_size == written.size
    assert load_recipe(new.path).doc.package.version == "1.0"
