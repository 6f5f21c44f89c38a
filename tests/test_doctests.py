"""Run the examples in every module's docstrings."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import streamcore

SKIP = {"streamcore.cli"}


def _modules():
    for info in pkgutil.walk_packages(streamcore.__path__, "streamcore."):
        if info.name not in SKIP:
            yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest failures in {name}"
