"""Fixtures: a Pushgateway and Chromium from Debian, started on loopback and stopped by process id.

In CI (``CI`` set) a missing binary is an error, never a skip: ``.ci/run`` installs
``prometheus-pushgateway`` and ``chromium`` with apt-get when they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: where tests keep what a person may want to look at (screenshots); ignored by git.
ARTIFACTS = Path(os.environ.get("STREAMCORE_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: .ci/run must apt-get install {package}")
        pytest.skip(f"{name} not installed (apt-get install {package}; .ci/run does it)")
    return path


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """``host:port`` of a fresh Debian prometheus-pushgateway on a free loopback port."""
    binary = need_binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    log = (tmp_path / "pushgateway.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            # Debian's default persists to /var/lib: a test gateway keeps its state in its own directory
            f"--persistence.file={tmp_path / 'pushgateway.db'}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=tmp_path,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def chromium() -> str:
    """The path of Debian's chromium."""
    return need_binary("chromium", "chromium")
