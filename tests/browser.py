"""Real headless Chromium for the tests: load a page, let its scripts run, read the DOM."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def page_result(url: str, element: str = "result", budget_ms: int = 10000) -> dict:
    """Load `url` in a fresh profile and return the JSON text of the element with id `element`."""
    browser = chromium()
    assert browser is not None
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    match = re.search(rf'<pre id="{element}">(.*?)</pre>', proc.stdout, re.S)
    assert match is not None, f"no #{element} in the page: {proc.stdout[:500]} {proc.stderr[-500:]}"
    text = match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(text)
