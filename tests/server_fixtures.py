"""Real servers for tests (a pytest plugin of tests/conftest.py): one PostgreSQL and one Redis per session.

Each starts on a temporary directory and a free loopback port and is stopped by its
process id at the end of the session (:mod:`streamcore.testing.servers`). A missing
server program skips the tests on a developer's machine and fails them in CI (``CI``
set), where ``.ci/run`` installs Debian's packages first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from streamcore.testing.servers import PostgresServer, RedisServer, ServerNotInstalledError


def _start(server: Any) -> Any:
    try:
        return server.start()
    except ServerNotInstalledError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}; CI must have it (.ci/run installs it)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = _start(PostgresServer())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = _start(RedisServer())
    try:
        yield server
    finally:
        server.stop()
