"""What the changelog operators share: one element at a time, in input order, under its key.

The unbounded group aggregate, the regular join and TopN each turn an element (a
:class:`~streamcore.changelog.Change` or a plain row) into zero or more changes, and the
changes must leave in input order with the timestamp of the element that caused them.
:class:`ChangelogOperator` runs that loop once for all three: it sets the key context of
each element, calls the operator's ``process_element`` and keeps the output timestamps in
step. It also counts the retractions an operator with state TTL ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.changelog import Change
from streamcore.errors import KeyEncodingError, StreamcoreError
from streamcore.operators.base import user_error
from streamcore.operators.keyed import KeyedOperator

__all__ = ["ChangelogOperator"]


class ChangelogOperator(KeyedOperator):
    """A keyed operator that emits a changelog, one input element at a time.

    Subclasses implement :meth:`process_element`; they may override :meth:`blamed` (the user
    function a failure inside ``process_element`` is attributed to) and :meth:`wrap_key_error`.
    """

    retractions_ignored: int = 0

    def process_element(self, value: Any, key: Any, side: int, out: list[Change]) -> None:
        """Append the changes ``value`` (of input ``side``, under ``key``) causes to ``out``."""
        raise NotImplementedError

    def blamed(self) -> tuple[Callable[..., Any], str] | None:
        """The user function (and its role) that an unexpected error in ``process_element``
        is reported against; None lets the error through as it is."""
        return None

    def wrap_key_error(self, exc: KeyEncodingError, side: int) -> KeyEncodingError:
        """The error to raise when the key of an element of input ``side`` cannot be encoded."""
        return self.key_error(exc, side)

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Process each element under its key and emit the changes, in input order."""
        keys = self.extract_keys(values, side)
        self.records_in += len(values)
        kc = self.key_context
        assert kc is not None
        out: list[Change] = []
        out_ts: list[int] | None = None if timestamps is None else []
        tss = timestamps if timestamps is not None else [None] * len(values)
        process = self.process_element
        self.backend.begin_batch()
        try:
            key_bytes = kc.key_bytes_batch(keys)
            for v, k, kb, ts in zip(values, keys, key_bytes, tss, strict=True):
                kc.key = k
                kc.key_bytes = kb
                n = len(out)
                process(v, k, side, out)
                if out_ts is not None:
                    out_ts.extend([ts] * (len(out) - n))  # type: ignore[list-item]
        except KeyEncodingError as exc:
            raise self.wrap_key_error(exc, side) from exc
        except StreamcoreError:
            raise
        except Exception as exc:
            blamed = self.blamed()
            if blamed is None:
                raise
            raise user_error(self, blamed[0], blamed[1], exc) from exc
        finally:
            self.backend.end_batch()
        self.records_out += len(out)
        self.output.emit(out, out_ts)  # type: ignore[arg-type]
        self.cleanup_state_incrementally()

    def metrics(self) -> dict[str, Any]:
        """Counters, plus ``retractions_ignored`` (retractions of rows whose state expired)."""
        m = super().metrics()
        m["retractions_ignored"] = self.retractions_ignored
        return m
