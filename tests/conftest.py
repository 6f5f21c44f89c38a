"""Shared test configuration: bounded hypothesis profiles with a printed, replayable seed.

Property tests draw their examples from one seed per run, random unless
``HYPOTHESIS_SEED`` (or ``--hypothesis-seed``) fixes it. The seed is printed in the
summary of every run, so a failure seen once in CI is replayed exactly with
``HYPOTHESIS_SEED=<seed> make test`` (or one test: ``HYPOTHESIS_SEED=<seed> .venv/bin/python
-m pytest tests/...::test_name``). The ``ci`` profile bounds the examples per test, not
their randomness: every run explores new inputs.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True
)
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Fix the run's hypothesis seed (before hypothesis's own plugin reads the option)."""
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = os.environ.get("HYPOTHESIS_SEED") or str(random.randrange(2**32))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the seed, and how to replay it."""
    seed = config.getoption("hypothesis_seed", None)
    profile = settings.get_current_profile_name()
    terminalreporter.write_line(
        f"hypothesis profile {profile!r}, seed {seed}: replay with HYPOTHESIS_SEED={seed}"
    )
