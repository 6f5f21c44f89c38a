"""Key groups: stable across processes, in range, clear errors for bad keys."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.errors import ConfigurationError, KeyEncodingError
from streamcore.keygroups import KeyGroupRange, check_max_parallelism, key_group_for

KEYS = ["user-1", 42, -7, b"\x00raw", ("shop", 3), None, 3.25, True]


@given(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(), st.binary()), st.integers(1, 4096))
def test_key_group_in_range(key, maxp):
    assert 0 <= key_group_for(key, maxp) < maxp


def test_key_groups_are_stable_across_processes():
    code = f"from streamcore.keygroups import key_group_for;print([key_group_for(k, 128) for k in {KEYS!r}])"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": "", "PYTHONPATH": ":".join(sys.path)},
        ).stdout
        for seed in (1, 2)
    }
    assert len(runs) == 1
    assert runs.pop().strip() == str([key_group_for(k, 128) for k in KEYS])


def test_keys_spread_over_key_groups():
    counts = [0] * 128
    for i in range(20_000):
        counts[key_group_for(f"user-{i}", 128)] += 1
    assert min(counts) > 100


def test_unsupported_key_type_is_a_type_error():
    with pytest.raises(KeyEncodingError) as info:
        key_group_for([1, 2])
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("bad", [0, -1, 1 << 16, "128", 1.5])
def test_bad_max_parallelism(bad):
    with pytest.raises(ConfigurationError):
        check_max_parallelism(bad)


def test_key_group_range():
    r = KeyGroupRange.all(8)
    assert len(r) == 8 and 0 in r and 8 not in r and list(r) == list(range(8))
    with pytest.raises(ConfigurationError):
        KeyGroupRange(5, 2)
