"""Built-in scalar functions of streamcore SQL: their Python implementations and result types.

Each entry of :data:`SCALARS` maps a SQL function name to ``(function, result type)``
where the result type is a :class:`~streamcore.sql.types.SqlType` or a callable of the
argument types. Functions return ``NULL`` (``None``) when an argument is ``NULL``,
except where SQL says otherwise (``COALESCE``, ``CONCAT_WS``, ``IFNULL``); that rule is
applied by the expression compiler, so the implementations here see non-NULL values.

Time values are int milliseconds since the epoch (UTC); format patterns are Java's
(``yyyy-MM-dd HH:mm:ss``), as in Flink.

>>> date_format(0, "yyyy-MM-dd HH:mm:ss")
'1970-01-01 00:00:00'
>>> to_timestamp("1970-01-01 00:01:00")
60000
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from streamcore.sql.types import BIGINT, BOOLEAN, DOUBLE, INT, STRING, TIMESTAMP, SqlType, parse_timestamp

__all__ = ["NULL_TOLERANT", "SCALARS", "TIME_UNITS_MS", "date_format", "floor_time", "to_timestamp"]

#: milliseconds of each fixed-length time unit (``INTERVAL '5' MINUTE``, ``FLOOR(ts TO HOUR)``).
TIME_UNITS_MS = {
    "MILLISECOND": 1,
    "SECOND": 1_000,
    "MINUTE": 60_000,
    "HOUR": 3_600_000,
    "DAY": 86_400_000,
    "WEEK": 7 * 86_400_000,
}
_PLURALS = {f"{u}S": u for u in TIME_UNITS_MS}

_JAVA_TOKENS = re.compile(r"yyyy|yy|MM|dd|HH|hh|mm|ss|SSS|a|EEE|'[^']*'")
_STRFTIME = {
    "yyyy": "%Y",
    "yy": "%y",
    "MM": "%m",
    "dd": "%d",
    "HH": "%H",
    "hh": "%I",
    "mm": "%M",
    "ss": "%S",
    "a": "%p",
    "EEE": "%a",
}


def unit_ms(unit: str) -> int | None:
    """Milliseconds of a time unit name (``MINUTE``, ``minutes``...), ``None`` if not fixed-length."""
    u = unit.upper()
    return TIME_UNITS_MS.get(_PLURALS.get(u, u))


@lru_cache(maxsize=64)
def _strftime_pattern(java: str) -> tuple[str, bool]:
    has_ms = "SSS" in java

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok.startswith("'"):
            return tok[1:-1].replace("%", "%%")
        if tok == "SSS":
            return "\x01"
        return _STRFTIME[tok]

    return _JAVA_TOKENS.sub(sub, java.replace("%", "%%")), has_ms


def _utc(ms: int) -> _dt.datetime:
    return _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(milliseconds=ms)


def date_format(ms: int, pattern: str = "yyyy-MM-dd HH:mm:ss") -> str:
    """Format a timestamp with a Java pattern (Flink's ``DATE_FORMAT``)."""
    fmt, has_ms = _strftime_pattern(pattern)
    text = _utc(ms).strftime(fmt)
    return text.replace("\x01", f"{ms % 1000:03d}") if has_ms else text


def to_timestamp(text: str, pattern: str | None = None) -> int | None:
    """Parse a timestamp (ISO text, or a Java ``pattern``) to int ms; ``None`` if it does not parse."""
    if pattern is None:
        return parse_timestamp(text)
    fmt, has_ms = _strftime_pattern(pattern)
    try:
        if has_ms:
            head, _, tail = fmt.partition("\x01")
            dt = _dt.datetime.strptime(text[: len(text) - len(tail) - 3] if tail else text[:-3], head)
            extra = int(text[len(text) - len(tail) - 3 : len(text) - len(tail)])
        else:
            dt, extra = _dt.datetime.strptime(text, fmt), 0
    except ValueError:
        return None
    return parse_timestamp(dt.replace(tzinfo=_dt.UTC)) + extra  # type: ignore[operator]


def floor_time(ms: int, unit: str) -> int:
    """``FLOOR(ts TO unit)``: the start of the unit containing ``ms`` (calendar units for MONTH/YEAR)."""
    step = unit_ms(unit)
    if step is not None:
        return ms - ms % step
    dt = _utc(ms)
    if unit.upper() == "MONTH":
        dt = dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit.upper() == "YEAR":
        dt = dt.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        raise ValueError(unit)
    return parse_timestamp(dt)  # type: ignore[return-value]


def ceil_time(ms: int, unit: str) -> int:
    """``CEIL(ts TO unit)``: the end of the unit containing ``ms`` (``ms`` itself on a boundary)."""
    step = unit_ms(unit)
    if step is None:
        raise ValueError(unit)
    return ms if ms % step == 0 else ms - ms % step + step


def extract(unit: str, ms: int) -> int:
    """``EXTRACT(unit FROM ts)`` for YEAR, MONTH, DAY, HOUR, MINUTE, SECOND, DOW, DOY, WEEK, QUARTER."""
    dt = _utc(ms)
    u = unit.upper()
    if u == "MILLISECOND":
        return ms % 1000
    if u == "DOW":
        return (dt.isoweekday() % 7) + 1
    if u == "DOY":
        return dt.timetuple().tm_yday
    if u == "WEEK":
        return dt.isocalendar()[1]
    if u == "QUARTER":
        return (dt.month - 1) // 3 + 1
    if u in ("DAY", "DAYOFMONTH"):
        return dt.day
    return int(getattr(dt, u.lower()))


def _round(x: Any, d: int = 0) -> Any:
    r = round(x, d)
    return r if isinstance(x, float) or d > 0 else int(r)


def _substring(s: str, start: int, length: int | None = None) -> str:
    i = max(start - 1, 0) if start > 0 else max(len(s) + start, 0)
    return s[i:] if length is None else s[i : i + max(length, 0)]


def _split_index(s: str, sep: str, i: int) -> str | None:
    parts = s.split(sep)
    return parts[i] if 0 <= i < len(parts) else None


def _regexp_extract(s: str, pattern: str, group: int = 1) -> str | None:
    m = re.search(pattern, s)
    if m is None:
        return None
    return m.group(group if m.re.groups >= group else 0)


def _from_unixtime(sec: int, pattern: str = "yyyy-MM-dd HH:mm:ss") -> str:
    return date_format(int(sec) * 1000, pattern)


def _unix_timestamp(text: Any, pattern: str | None = None) -> int | None:
    ms = text if type(text) is int else to_timestamp(text, pattern)
    return None if ms is None else ms // 1000


def _lpad(s: str, n: int, pad: str = " ") -> str:
    return s[:n] if len(s) >= n else ((pad * n)[: n - len(s)] + s if pad else s)


def _rpad(s: str, n: int, pad: str = " ") -> str:
    return s[:n] if len(s) >= n else (s + (pad * n)[: n - len(s)] if pad else s)


def _numeric_result(types: list[SqlType]) -> SqlType:
    return types[0].plain() if types and types[0].is_numeric else DOUBLE


#: SQL name -> (implementation over non-NULL arguments, result type or types -> type).
SCALARS: dict[str, tuple[Callable[..., Any], SqlType | Callable[[list[SqlType]], SqlType]]] = {
    "UPPER": (str.upper, STRING),
    "LOWER": (str.lower, STRING),
    "INITCAP": (str.title, STRING),
    "CHAR_LENGTH": (len, INT),
    "LENGTH": (len, INT),
    "TRIM": (str.strip, STRING),
    "LTRIM": (str.lstrip, STRING),
    "RTRIM": (str.rstrip, STRING),
    "SUBSTRING": (_substring, STRING),
    "SUBSTR": (_substring, STRING),
    "REPLACE": (str.replace, STRING),
    "POSITION": (lambda sub, s: s.find(sub) + 1, INT),
    "LEFT": (lambda s, n: s[: max(n, 0)], STRING),
    "RIGHT": (lambda s, n: s[-n:] if n > 0 else "", STRING),
    "LPAD": (_lpad, STRING),
    "RPAD": (_rpad, STRING),
    "REVERSE": (lambda s: s[::-1], STRING),
    "REPEAT": (lambda s, n: s * max(n, 0), STRING),
    "SPLIT_INDEX": (_split_index, STRING),
    "REGEXP_EXTRACT": (_regexp_extract, STRING),
    "REGEXP_REPLACE": (lambda s, p, r: re.sub(p, r, s), STRING),
    "REGEXP": (lambda s, p: re.search(p, s) is not None, BOOLEAN),
    "MD5": (lambda s: hashlib.md5(s.encode()).hexdigest(), STRING),
    "SHA256": (lambda s: hashlib.sha256(s.encode()).hexdigest(), STRING),
    "ABS": (abs, _numeric_result),
    "SIGN": (lambda x: (x > 0) - (x < 0), INT),
    "ROUND": (_round, _numeric_result),
    "TRUNCATE": (lambda x, d=0: math.trunc(x * 10**d) / 10**d if d else math.trunc(x), _numeric_result),
    "MOD": (
        lambda a, b: (
            None
            if b == 0
            else math.fmod(a, b)
            if isinstance(a, float) or isinstance(b, float)
            else abs(a) % abs(b) * (1 if a >= 0 else -1)
        ),
        _numeric_result,
    ),
    "POWER": (lambda a, b: float(a) ** b, DOUBLE),
    "SQRT": (lambda x: math.sqrt(x) if x >= 0 else None, DOUBLE),
    "LN": (lambda x: math.log(x) if x > 0 else None, DOUBLE),
    "LOG10": (lambda x: math.log10(x) if x > 0 else None, DOUBLE),
    "LOG2": (lambda x: math.log2(x) if x > 0 else None, DOUBLE),
    "EXP": (math.exp, DOUBLE),
    "DATE_FORMAT": (date_format, STRING),
    "TO_TIMESTAMP": (to_timestamp, TIMESTAMP),
    "FROM_UNIXTIME": (_from_unixtime, STRING),
    "UNIX_TIMESTAMP": (_unix_timestamp, BIGINT),
    "TO_TIMESTAMP_LTZ": (lambda v, p=3: int(v) * (1000 if p == 0 else 1), TIMESTAMP),
    "YEAR": (lambda ms: extract("YEAR", ms), BIGINT),
    "QUARTER": (lambda ms: extract("QUARTER", ms), BIGINT),
    "MONTH": (lambda ms: extract("MONTH", ms), BIGINT),
    "DAYOFMONTH": (lambda ms: extract("DAY", ms), BIGINT),
    "HOUR": (lambda ms: extract("HOUR", ms), BIGINT),
    "MINUTE": (lambda ms: extract("MINUTE", ms), BIGINT),
    "SECOND": (lambda ms: extract("SECOND", ms), BIGINT),
}

#: Functions that are called with NULL arguments (the others return NULL for any NULL argument).
NULL_TOLERANT = frozenset({"CONCAT_WS"})
