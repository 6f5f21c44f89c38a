"""The dashboard, rendered by a real headless Chromium (Debian's chromium).

Chromium runs with its command-line ``--dump-dom`` (the DOM after the page's scripts ran)
and ``--screenshot`` modes and ``--virtual-time-budget``, which lets the page's fetches of
the REST API complete before the DOM is taken: no WebDriver, no Node.js, nothing else to
install. The screenshot is kept in ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.observe.conftest import ARTIFACTS
from tests.observe.jobs import running_job, wait_progress

pytestmark = pytest.mark.chromium


def chromium_args(binary: str, profile: Path) -> list[str]:
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--window-size=1400,1100",
    ]


def test_dashboard_renders_the_graph_and_the_figures(tmp_path, chromium):
    handle = running_job(tmp_path)
    try:
        url = handle.dashboard_url
        wait_progress(url, records=2_000, checkpoints=2)
        args = chromium_args(chromium, tmp_path / "profile")
        dom = subprocess.run(
            [*args, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True
        ).stdout
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        subprocess.run(
            [*args, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=90, check=True
        )
    finally:
        handle.stop()
    # The job graph: one SVG node per operator, one edge per connection.
    for uid in ("words", "counts", "sink"):
        assert 'class="node' in dom and f'data-uid="{uid}"' in dom, uid
    assert 'data-from="words" data-to="counts"' in dom and 'data-from="counts" data-to="sink"' in dom
    # The figures: records read, checkpoints, rates, watermarks per split, state.
    read = re.search(r'id="records-read">([\d,]+)<', dom)
    assert read and int(read.group(1).replace(",", "")) >= 2_000
    completed = re.search(r'id="checkpoints-completed">([\d,]+)<', dom)
    assert completed and int(completed.group(1)) >= 2
    assert re.search(r'id="job-state" class="state RUNNING">RUNNING<', dom)
    assert "generator-0" in dom and "generator-1" in dom
    assert "counts / reduce" in dom
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
