"""Parsing Flink SQL with sqlglot, and pointing at the text of any error.

sqlglot's generic dialect reads nearly all of the Flink SQL streamcore supports. Two
Flink constructs it does not read are rewritten first, on sqlglot's own tokens, by
*blanking* text (replacing it with spaces), so every position in the rewritten text is
the position in the user's text and errors point at what the user wrote:

* ``TABLE t`` as an argument of a window table function (``TUMBLE(TABLE t, ...)``):
  the keyword is blanked, leaving the table name as the argument.
* identifiers quoted with backticks (Flink's quotes): the backticks become double quotes.
* ``SESSION(`` (a keyword to sqlglot) as a window table function: renamed
  ``SESSTVF(``, a name of the same length that :mod:`streamcore.sql.windows` reads as
  ``SESSION``.
* ``WATERMARK FOR col AS expr`` in ``CREATE TABLE``: the clause (and its comma) is
  blanked and returned beside the statement; its expression is parsed on its own.

Everything else (``FOR SYSTEM_TIME AS OF``, ``INTERVAL '5' SECOND``, ``FLOOR(ts TO
MINUTE)``, ``LATERAL TABLE(...)``, ``PRIMARY KEY ... NOT ENFORCED``) is sqlglot's.

>>> [p.ast.key for p in parse_script("SET 'a' = 'b'; SELECT 1")]
['set', 'select']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, Tokenizer, TokenType

from streamcore.errors import SqlError, SqlSyntaxError

__all__ = ["SESSION_TVF", "Parsed", "SqlText", "parse_expression", "parse_script"]

#: what ``SESSION(`` of a window TVF is renamed to before sqlglot reads it (same length).
SESSION_TVF = "SESSTVF"


@dataclass(frozen=True)
class Watermark:
    """A ``WATERMARK FOR column AS expression`` clause of a ``CREATE TABLE``."""

    column: str
    expression: exp.Expression


@dataclass
class Parsed:
    """One statement: its sqlglot tree, the watermark clause taken out of it, and the text."""

    ast: exp.Expression
    source: SqlText
    watermark: Watermark | None = None


@dataclass
class SqlText:
    """The user's text: turns node and offset positions into line, column and the offending text."""

    text: str
    extra: dict[str, Any] = field(default_factory=dict)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based line and column of character ``offset``."""
        before = self.text[:offset]
        line = before.count("\n") + 1
        return line, offset - (before.rfind("\n") + 1) + 1

    def locate(self, node: exp.Expression | None) -> tuple[int | None, int | None, str]:
        """Line, column and text of ``node`` (its first positioned descendant); ``None`` if unknown."""
        if node is None:
            return None, None, ""
        start = None
        for sub in node.walk():
            meta = sub.meta if hasattr(sub, "meta") else {}
            if "start" in meta and (start is None or meta["start"] < start):
                start = meta["start"]
        try:
            text = node.sql()
        except Exception:  # a node sqlglot cannot print back: show its class
            text = type(node).__name__
        if start is None:
            return None, None, text
        line, col = self.position(start)
        # Identifiers and literals record their own start; a call's name starts the call.
        return line, col, text

    def error(self, cls: type[SqlError], message: str, node: exp.Expression | None = None) -> NoReturn:
        """Raise ``cls`` located at ``node``, quoting it."""
        line, col, text = self.locate(node)
        quoted = f" (at {_short(text)!r})" if text else ""
        raise cls(f"{message}{quoted}", line=line, column=col, text=text)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tokens(text: str, source: SqlText) -> list[Token]:
    try:
        return Tokenizer().tokenize(text)
    except TokenError as exc:
        m = re.search(r"Line (\d+), Col: (\d+)", str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        msg = f"cannot read the SQL text: {str(exc).splitlines()[0]}"
        raise SqlSyntaxError(msg, line=line, column=col) from None


def _blank(chars: list[str], start: int, end: int) -> None:
    for i in range(start, end + 1):
        if chars[i] != "\n":
            chars[i] = " "


def _rewrite(text: str, source: SqlText) -> tuple[str, list[tuple[int, str, int, int]], list[int]]:
    """Blank the Flink-only constructs; returns text, watermark clauses and statement ends."""
    chars = list(text)
    # Flink quotes identifiers with backticks: make them double quotes (same length).
    for t in _tokens(text, source):
        if t.token_type == TokenType.UNKNOWN and t.text == "`":
            chars[t.start] = '"'
    text = "".join(chars)
    toks = _tokens(text, source)
    watermarks: list[tuple[int, str, int, int]] = []  # (offset, column, expr start, expr end)
    ends: list[int] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        prev = toks[i - 1] if i else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.token_type == TokenType.SEMICOLON:
            ends.append(t.start)
        elif (
            t.token_type == TokenType.TABLE
            and prev is not None
            and prev.token_type in (TokenType.L_PAREN, TokenType.COMMA)
            and nxt is not None
            and nxt.token_type in (TokenType.VAR, TokenType.IDENTIFIER)
        ):
            _blank(chars, t.start, t.end)
        elif (
            t.token_type == TokenType.SESSION
            and nxt is not None
            and nxt.token_type == TokenType.L_PAREN
            and prev is not None
            and prev.token_type == TokenType.L_PAREN
        ):
            chars[t.start : t.end + 1] = list(SESSION_TVF)
        elif t.text.upper() == "WATERMARK" and nxt is not None and nxt.token_type == TokenType.FOR:
            i = _take_watermark(toks, i, chars, watermarks, source)
            continue
        i += 1
    return "".join(chars), watermarks, ends


def _take_watermark(
    toks: list[Token], i: int, chars: list[str], out: list[tuple[int, str, int, int]], source: SqlText
) -> int:
    start_tok = toks[i]
    if i + 4 >= len(toks) or toks[i + 3].token_type != TokenType.ALIAS:
        line, col = source.position(start_tok.start)
        msg = "WATERMARK must read WATERMARK FOR <column> AS <expression>"
        raise SqlSyntaxError(msg, line=line, column=col, text=start_tok.text)
    column = toks[i + 2].text
    j, depth = i + 4, 0
    expr_start = toks[j].start
    while j < len(toks):
        tt = toks[j].token_type
        if tt == TokenType.L_PAREN:
            depth += 1
        elif tt == TokenType.R_PAREN:
            if depth == 0:
                break
            depth -= 1
        elif tt == TokenType.COMMA and depth == 0:
            break
        j += 1
    expr_end = toks[j - 1].end
    blank_from = start_tok.start
    if i > 0 and toks[i - 1].token_type == TokenType.COMMA:
        blank_from = toks[i - 1].start
    elif j < len(toks) and toks[j].token_type == TokenType.COMMA:
        expr_end_blank = toks[j].start
        _blank(chars, blank_from, expr_end_blank)
        out.append((start_tok.start, column, expr_start, expr_end))
        return j + 1
    _blank(chars, blank_from, expr_end)
    out.append((start_tok.start, column, expr_start, expr_end))
    return j


def _parse_error(exc: ParseError, source: SqlText) -> SqlSyntaxError:
    errors = exc.errors or [{}]
    first = errors[0]
    line, col = first.get("line"), first.get("col")
    highlight = first.get("highlight") or ""
    if col is not None and highlight:
        col = max(1, col - len(highlight) + 1)
    desc = first.get("description") or str(exc).splitlines()[0]
    quoted = f" at {highlight!r}" if highlight else ""
    desc = re.sub(r"<Token token_type: [^,]*, text: ([^,]*), [^>]*>", r"'\1'", desc)
    msg = f"syntax error{quoted}: {desc}. See the supported SQL in streamcore.sql's documentation"
    return SqlSyntaxError(msg, line=line, column=col, text=highlight)


def _padded(text: str, start: int, end: int) -> str:
    """``text[start:end]`` preceded by blanks keeping its lines and columns (so positions stay global)."""
    return re.sub(r"[^\n]", " ", text[:start]) + text[start:end]


def parse_expression(text: str, start: int, end: int, source: SqlText) -> exp.Expression:
    """Parse ``text[start:end + 1]`` as one expression, positions kept."""
    padded = _padded(text, start, end + 1)
    # Read as the select list of a query: "SELECT" fits in the blanked prefix (a
    # watermark clause is always preceded by at least "CREATE TABLE t (").
    padded = "SELECT" + padded[6:] if start >= 7 and "\n" not in padded[:6] else "SELECT " + padded
    try:
        ast = sqlglot.parse_one(padded)
    except ParseError as exc:
        raise _parse_error(exc, source) from None
    if not isinstance(ast, exp.Select) or len(ast.expressions) != 1:
        source.error(SqlSyntaxError, "expected one expression", ast)
    return ast.expressions[0]


def parse_script(text: str) -> list[Parsed]:
    """Every statement of ``text`` (separated by ``;``), parsed.

    Raises:
        SqlSyntaxError: the text does not parse; line and column point at the error.
    """
    if not isinstance(text, str):
        msg = f"SQL must be a str, got {type(text).__name__}"
        raise SqlSyntaxError(msg)
    source = SqlText(text)
    clean, watermarks, ends = _rewrite(text, source)
    bounds, start = [], 0
    for end in [*ends, len(clean)]:
        bounds.append((start, end))
        start = end + 1
    out: list[Parsed] = []
    for s, e in bounds:
        if not clean[s:e].strip():
            continue
        try:
            ast = sqlglot.parse_one(_padded(clean, s, e))
        except ParseError as exc:
            raise _parse_error(exc, source) from None
        wm = [w for w in watermarks if s <= w[0] < e]
        watermark = None
        if wm:
            _, column, es, ee = wm[0]
            watermark = Watermark(column, parse_expression(text, es, ee, source))
        out.append(Parsed(ast, source, watermark))
    if not out:
        raise SqlSyntaxError("the SQL text holds no statement")
    return out
