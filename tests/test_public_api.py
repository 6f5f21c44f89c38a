"""The public API: every exported name exists and is documented; one error tree."""

from __future__ import annotations

import inspect

import streamcore
import streamcore.errors as errors


def test_all_is_sorted_and_unique():
    names = list(streamcore.__all__)
    assert len(names) == len(set(names))
    # isort style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions/modules.
    assert names == sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))


def test_every_exported_name_exists_and_has_a_docstring():
    for name in streamcore.__all__:
        obj = getattr(streamcore, name)
        if isinstance(obj, int):
            continue
        assert inspect.getdoc(obj), f"streamcore.{name} has no docstring"


def test_every_error_derives_from_streamcore_error():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.StreamcoreError), name
        assert cls.__doc__, name


def test_errors_subclass_builtins_where_natural():
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.KeyEncodingError, TypeError)
    assert issubclass(errors.TimestampError, TypeError)
    assert issubclass(errors.SerializationError, TypeError)


def test_import_is_light():
    import subprocess
    import sys

    heavy = ["confluent_kafka", "numpy", "prometheus_client", "openlineage", "rich", "http.server", "sqlglot"]
    code = f"import sys, streamcore; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
