"""The segment language: a tokenizer and recursive-descent parser for the text form, the equivalent JSON form,
and conversion both ways.

Grammar (DESIGN.md §3), lowest precedence first::

    expr   := or
    or     := and ("OR" and)*
    and    := unary ("AND" unary)*
    unary  := "NOT" unary | atom
    atom   := "(" expr ")" | FAMILY ":" VALUE | "segment:" ID | ACTION "(" ARGS ")"
    ARGS   := [ NAME "=" VALUE ("," NAME "=" VALUE)* ]

Keywords (AND, OR, NOT, segment, the action names and argument names) and tag families are case-insensitive;
values with spaces or punctuation are quoted ("..." or '...', backslash escapes the quote and itself).

The JSON form mirrors the tree::

    {"and": [x, y, ...]}  {"or": [x, y, ...]}  {"not": x}
    {"tag": {"family": "country", "value": "SG"}}  {"segment": 12}
    {"action": "purchased", "category": "beauty", "brand": ..., "merchant": ..., "within": "30d", "min_count": 2}

Actions also take count, spend and occurrence conditions (docs/segments.md): `max_count` (0 means "did not"),
`min_spend`/`max_spend` and `min_avg_order`/`max_avg_order` (purchased only; amounts in the events' currency
units as stored), `first_within` (the first matching event falls in the window) and `last_before` (there was a
matching event, but none in the window), and `product` (a SKU of the merchant's own catalogue).

Parsing is purely syntactic: whether a tag exists, a segment is the merchant's own or a merchant slug is allowed
is checked by `segments.evaluation.definition_resolve`, which raises the same `SegmentSyntaxError` at the
term's position. No input makes this module raise anything but `SegmentSyntaxError`: nesting, length and term
counts are bounded, so even hostile input cannot exhaust the stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_EXPRESSION_LENGTH = 10_000
MAX_DEPTH = 48  # parentheses and NOTs nested inside each other
MAX_TERMS = 200  # tags, segments and actions in one expression

ACTIONS = ("viewed", "carted", "favourited", "purchased")
ACTION_ARGS = (
    "category",
    "brand",
    "product",
    "merchant",
    "within",
    "min_count",
    "max_count",
    "min_spend",
    "max_spend",
    "min_avg_order",
    "max_avg_order",
    "first_within",
    "last_before",
)
COUNT_ARGS = ("min_count", "max_count")
MONEY_ARGS = ("min_spend", "max_spend", "min_avg_order", "max_avg_order")
WINDOW_ARGS = ("within", "first_within", "last_before")
# Conditions on what a consumer's matching events add up to; they need at least one event.
AGGREGATE_ARGS = (*MONEY_ARGS, "first_within", "last_before")
MAX_MONEY = Decimal("10000000000")  # ten billion currency units
WITHIN_UNITS = {"h": 1, "d": 24, "w": 24 * 7}  # hours per unit
MAX_WITHIN_HOURS = 5 * 366 * 24  # five years; events are not kept that long anyway
MAX_MIN_COUNT = 1_000_000

_FAMILY_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_WITHIN_RE = re.compile(r"([0-9]{1,7})([hdw])\Z")
_MONEY_RE = re.compile(r"[0-9]{1,11}(\.[0-9]{1,2})?\Z")
_SPECIAL = set("():,=\"'")
_BARE_VALUE_RE = re.compile(r"[^\s():,=\"']+\Z")
_KEYWORDS = {"and", "or", "not"}
# Words the text form reads as something else before a ':' ("segment:12", "purchased(...)", "NOT ..."), so no
# tag family may be called that.
RESERVED_FAMILIES = frozenset({"segment", "likely_to_buy", *_KEYWORDS, *ACTIONS})

TERM_EXPECTED = ["a tag (family:value)", "segment:ID", "an action such as purchased(...)", "NOT", "("]


class SegmentSyntaxError(ValueError):
    """A bad expression or definition: where it went wrong, what was found, what was expected.

    `position` is the 1-based character position in the text (for text on one line, the column), or a JSON
    path such as `$.and[1].tag.value` for the JSON form. `offset` is the 0-based character offset (None for JSON).
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | str,
        found: str,
        expected: list[str] | None = None,
        text: str | None = None,
    ):
        self.found = found
        self.expected = list(expected or [])
        if isinstance(position, int):
            offset = max(0, position)
            before = (text or "")[:offset]
            self.offset: int | None = offset
            self.path: str | None = None
            self.line: int | None = before.count("\n") + 1
            self.column: int | None = offset - (before.rfind("\n") + 1) + 1
            self.position: int | str = offset + 1
            where = f"column {self.column}" if self.line == 1 else f"line {self.line}, column {self.column}"
        else:
            self.offset = None
            self.path = position
            self.line = None
            self.column = None
            self.position = position
            where = position
        self.reason = message
        super().__init__(f"{message} at {where}")

    def as_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"position": self.position, "found": self.found, "expected": self.expected}
        if self.offset is not None:
            details.update(offset=self.offset, line=self.line, column=self.column)
        else:
            details["path"] = self.path
        return details


# --------------------------------------------------------------------------------------------------- the tree
# `pos` is where the node starts: a character offset (text form) or a JSON path (JSON form). It takes no part in
# equality, so the same expression parsed from text and from JSON compares equal.


@dataclass(frozen=True)
class TagTerm:
    family: str
    value: str
    pos: int | str = field(default=0, compare=False)


@dataclass(frozen=True)
class SegmentTerm:
    segment_id: int
    pos: int | str = field(default=0, compare=False)


@dataclass(frozen=True)
class ActionTerm:
    action: str
    category: str | None = None
    brand: str | None = None
    merchant: str | None = None
    within: str | None = None
    min_count: int = 1
    product: str | None = None
    max_count: int | None = None
    min_spend: Decimal | None = None
    max_spend: Decimal | None = None
    min_avg_order: Decimal | None = None
    max_avg_order: Decimal | None = None
    first_within: str | None = None
    last_before: str | None = None
    pos: int | str = field(default=0, compare=False)
    # Where each argument's value starts, for errors found later (an unknown merchant, say).
    arg_pos: tuple[tuple[str, int | str], ...] = field(default=(), compare=False)

    def position_of(self, arg: str) -> int | str:
        return dict(self.arg_pos).get(arg, self.pos)

    @property
    def default_min_count(self) -> int:
        """min_count when not written: 1 ("did it"), or 0 when a max_count is given (so max_count=0 is "did not")."""
        return 0 if self.max_count is not None else 1

    @property
    def within_hours(self) -> int | None:
        return window_hours(self.within)

    @property
    def has_aggregates(self) -> bool:
        """Whether the term puts conditions on a consumer's matching events beyond their count."""
        return self.max_count is not None or any(getattr(self, arg) is not None for arg in AGGREGATE_ARGS)

    @property
    def includes_none(self) -> bool:
        """Whether a consumer with no matching event at all is in the term (min_count=0: "did not" or "at most")."""
        return (
            self.min_count == 0
            and self.min_spend in (None, Decimal(0))
            and not any(
                getattr(self, arg) is not None
                for arg in ("min_avg_order", "max_avg_order", "first_within", "last_before")
            )
        )


def window_hours(window: str | None) -> int | None:
    if window is None:
        return None
    match = _WITHIN_RE.match(window)
    if match is None:  # the parser only builds terms whose window matched
        raise ValueError(f"not a window: {window!r}")
    number, unit = match.groups()
    return int(number) * WITHIN_UNITS[unit]


@dataclass(frozen=True)
class Not:
    operand: Node
    pos: int | str = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]
    pos: int | str = field(default=0, compare=False)


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]
    pos: int | str = field(default=0, compare=False)


# ---------------------------------------------------------------- likely_to_buy (product audiences): the term
# Kept in its own block (with the parser, JSON and text helpers at the end of the module) so the action atoms
# above can grow arguments independently.

LIKELY_TO_BUY = "likely_to_buy"
LIKELY_ARGS = ("product", "category", "top", "band")
LIKELY_BANDS = {"top1": 1, "top5": 5, "top10": 10, "top25": 25, "top50": 50}  # percent of scored consumers
LIKELY_DEFAULT_BAND = "top10"
MAX_LIKELY_TOP = 10_000_000


@dataclass(frozen=True)
class LikelyTerm:
    """`likely_to_buy(product="SKU", top=1000)` / `likely_to_buy(category="outdoor", band="top10")`: the consumers
    the serving recommendation model scores highest for one of the merchant's products, or for any of its
    products in a category. Exactly one of product and category; at most one of top (a count) and band (a share
    of the consumers the model scores); neither means band top10."""

    product: str | None = None
    category: str | None = None
    top: int | None = None
    band: str | None = None
    pos: int | str = field(default=0, compare=False)
    arg_pos: tuple[tuple[str, int | str], ...] = field(default=(), compare=False)

    def position_of(self, arg: str) -> int | str:
        return dict(self.arg_pos).get(arg, self.pos)

    @property
    def percent(self) -> int | None:
        if self.top is not None:
            return None
        return LIKELY_BANDS[self.band or LIKELY_DEFAULT_BAND]


# ------------------------------------------------------------------------ end of the likely_to_buy term block

Node = TagTerm | SegmentTerm | ActionTerm | LikelyTerm | Not | And | Or
Term = TagTerm | SegmentTerm | ActionTerm | LikelyTerm


def _join(cls: type[And] | type[Or], operands: list[Node], pos: int | str) -> Node:
    """And/Or with nested nodes of the same kind flattened; one operand is just that operand."""
    flat: list[Node] = []
    for operand in operands:
        if isinstance(operand, cls):
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    return flat[0] if len(flat) == 1 else cls(tuple(flat), pos)


def terms(node: Node) -> list[Term]:
    """Every tag, segment and action term in the tree, left to right."""
    found: list[Term] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And | Or):
            stack.extend(reversed(current.operands))
        elif isinstance(current, Not):
            stack.append(current.operand)
        else:
            found.append(current)
    return found


# ------------------------------------------------------------------------------------------------ tokenizer


@dataclass(frozen=True)
class Token:
    kind: str  # WORD, STRING, "(", ")", ":", ",", "=", END
    text: str  # the value (unquoted for STRING)
    pos: int
    raw: str  # as written, for "found ..." in errors

    def describe(self) -> str:
        if self.kind == "END":
            return "end of input"
        raw = self.raw if len(self.raw) <= 40 else self.raw[:37] + "..."
        return f"'{raw}'" if self.kind != "STRING" else raw


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "():,=":
            tokens.append(Token(ch, ch, i, ch))
            i += 1
        elif ch in "\"'":
            start, quote = i, ch
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise SegmentSyntaxError(
                        "Unterminated quoted value",
                        position=start,
                        found="end of input",
                        expected=[f"a closing {quote}"],
                        text=text,
                    )
                c = text[i]
                if c == "\\" and i + 1 < n and text[i + 1] in (quote, "\\"):
                    chars.append(text[i + 1])
                    i += 2
                elif c == quote:
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            tokens.append(Token("STRING", "".join(chars), start, text[start:i]))
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(Token("WORD", text[start:i], start, text[start:i]))
    tokens.append(Token("END", "", n, ""))
    return tokens


# ------------------------------------------------------------------------------------------------ the parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.term_count = 0

    # helpers
    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "END":
            self.index += 1
        return token

    def error(self, message: str, token: Token, expected: list[str]) -> SegmentSyntaxError:
        return SegmentSyntaxError(
            message, position=token.pos, found=token.describe(), expected=expected, text=self.text
        )

    def is_keyword(self, token: Token, keyword: str) -> bool:
        return token.kind == "WORD" and token.text.lower() == keyword

    def expect(self, kind: str, description: str) -> Token:
        token = self.current
        if token.kind != kind:
            raise self.error(f"Expected {description}, found {token.describe()}", token, [description])
        return self.advance()

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"Expression nested more than {MAX_DEPTH} levels deep", token, ["a simpler expression"])

    # grammar
    def parse(self) -> Node:
        if not self.text.strip():
            raise self.error("The expression is empty", self.current, TERM_EXPECTED)
        node = self.parse_or()
        token = self.current
        if token.kind != "END":
            expected = ["AND", "OR", "end of expression"]
            message = (
                "Unmatched ')'"
                if token.kind == ")"
                else f"Expected AND, OR or the end of the expression, found {token.describe()}"
            )
            raise self.error(message, token, expected)
        return node

    def parse_or(self) -> Node:
        start = self.current.pos
        operands = [self.parse_and()]
        while self.is_keyword(self.current, "or"):
            self.advance()
            operands.append(self.parse_and())
        return _join(Or, operands, start)

    def parse_and(self) -> Node:
        start = self.current.pos
        operands = [self.parse_unary()]
        while self.is_keyword(self.current, "and"):
            self.advance()
            operands.append(self.parse_unary())
        return _join(And, operands, start)

    def parse_unary(self) -> Node:
        # NOT chains are read in a loop, not by recursion, so "NOT NOT NOT ..." cannot exhaust the stack.
        nots: list[int] = []
        while self.is_keyword(self.current, "not"):
            self.enter(self.current)
            nots.append(self.advance().pos)
        node = self.parse_atom()
        for pos in reversed(nots):
            node = Not(node, pos)
            self.depth -= 1
        return node

    def parse_atom(self) -> Node:
        token = self.current
        if token.kind == "(":
            self.enter(token)
            self.advance()
            if self.current.kind == ")":
                raise self.error("Empty parentheses", self.current, TERM_EXPECTED)
            node = self.parse_or()
            closing = self.current
            if closing.kind != ")":
                raise self.error(
                    f"Expected ')' to close the '(' at column {token.pos + 1}, found {closing.describe()}",
                    closing,
                    [")", "AND", "OR"],
                )
            self.advance()
            self.depth -= 1
            return node
        if token.kind != "WORD":
            found = "a quoted value" if token.kind == "STRING" else token.describe()
            raise self.error(f"Expected a term, found {found}", token, TERM_EXPECTED)
        word = token.text.lower()
        if word in ("and", "or"):
            raise self.error(f"Expected a term before {token.text.upper()}", token, TERM_EXPECTED)
        self.term_count += 1
        if self.term_count > MAX_TERMS:
            raise self.error(f"More than {MAX_TERMS} terms in one expression", token, ["fewer terms"])
        following = self.peek()
        if word == "segment" and following.kind == ":":
            return self.parse_segment()
        if word == LIKELY_TO_BUY:  # product audiences: see the likely_to_buy block
            if following.kind != "(":
                raise self.error(f"Expected '(' after {LIKELY_TO_BUY}, found {following.describe()}", following, ["("])
            return _parse_likely(self)
        if word in ACTIONS:
            if following.kind != "(":
                raise self.error(
                    f"Expected '(' after the action {word}, found {following.describe()}",
                    following,
                    ["("],
                )
            return self.parse_action()
        if following.kind == ":":
            return self.parse_tag()
        raise self.error(
            f"Unknown term {token.describe()}: expected family:value, segment:ID or an action ({', '.join(ACTIONS)})",
            token,
            TERM_EXPECTED,
        )

    def parse_tag(self) -> TagTerm:
        family_token = self.advance()
        family = family_token.text.lower()
        if not _FAMILY_RE.match(family):
            raise self.error(
                f"{family_token.describe()} is not a tag family name (letters, digits and _)",
                family_token,
                ["a tag family"],
            )
        self.advance()  # ":"
        value_token = self.current
        if value_token.kind not in ("WORD", "STRING") or (value_token.kind == "STRING" and not value_token.text):
            raise self.error(
                f"Expected a value after '{family}:', found {value_token.describe()}",
                value_token,
                [f"a {family} value"],
            )
        self.advance()
        return TagTerm(family, value_token.text, family_token.pos)

    def parse_segment(self) -> SegmentTerm:
        start = self.advance()  # "segment"
        self.advance()  # ":"
        id_token = self.current
        if id_token.kind != "WORD" or not id_token.text.isdigit() or not id_token.text.isascii():
            raise self.error(
                f"Expected a segment id (a number) after 'segment:', found {id_token.describe()}",
                id_token,
                ["a segment id"],
            )
        self.advance()
        segment_id = int(id_token.text)
        if not 0 < segment_id < 2**63:
            raise self.error(f"No segment {id_token.describe()}", id_token, ["a segment id"])
        return SegmentTerm(segment_id, start.pos)

    def parse_action(self) -> ActionTerm:
        name_token, args, positions, _ = self.parse_call(ACTION_ARGS, _action_arg)
        return _action_term(name_token.text.lower(), args, positions, name_token.pos, self.text)

    def parse_call(
        self, allowed: tuple[str, ...], value_check: Callable[[str, Any, int, str | None], Any]
    ) -> tuple[Token, dict[str, Any], list[tuple[str, int]], Token]:
        """`name(arg=value, ...)`, from the name through ")": each argument one of `allowed`, given once, its
        value checked by `value_check(arg, raw, position, text)`. Actions and likely_to_buy share it, so their
        arguments are written and refused alike. Returns the name, the values, their positions in order and ")"."""
        name_token = self.advance()
        self.advance()  # "("
        args: dict[str, Any] = {}
        positions: list[tuple[str, int]] = []
        if self.current.kind != ")":
            while True:
                arg_token = self.current
                if arg_token.kind != "WORD":
                    raise self.error(
                        f"Expected an argument name, found {arg_token.describe()}", arg_token, list(allowed)
                    )
                arg = arg_token.text.lower()
                if arg not in allowed:
                    raise self.error(
                        f"Unknown argument {arg_token.describe()} for {name_token.text.lower()}(); "
                        f"expected one of {', '.join(allowed)}",
                        arg_token,
                        list(allowed),
                    )
                if arg in args:
                    raise self.error(f"Argument {arg} given twice", arg_token, [a for a in allowed if a not in args])
                self.advance()
                self.expect("=", f"'=' after {arg}")
                value_token = self.current
                if value_token.kind not in ("WORD", "STRING"):
                    raise self.error(
                        f"Expected a value for {arg}, found {value_token.describe()}", value_token, [f"a {arg} value"]
                    )
                self.advance()
                args[arg] = value_check(arg, value_token.text, value_token.pos, self.text)
                positions.append((arg, value_token.pos))
                if self.current.kind == ",":
                    self.advance()
                    continue
                if self.current.kind == ")":
                    break
                raise self.error(
                    f"Expected ',' or ')' in the arguments of {name_token.text.lower()}(), "
                    f"found {self.current.describe()}",
                    self.current,
                    [",", ")"],
                )
        closing = self.advance()  # ")"
        return name_token, args, positions, closing


def _action_arg(arg: str, raw: Any, pos: int | str, text: str | None) -> Any:
    """Validate one action argument's value; errors name its position."""
    if arg in COUNT_ARGS:
        lowest = 0  # min_count=0 is refused on its own later (it needs a max_count)
        expected = ["an integer >= 1" if arg == "min_count" else "an integer >= 0"]
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise SegmentSyntaxError(f"{arg} must be a whole number", position=pos, found=_show(raw), expected=expected)
        value_text = str(raw).strip()
        if not re.fullmatch(r"-?[0-9]{1,9}", value_text):
            raise SegmentSyntaxError(
                f"{arg} must be a whole number", position=pos, found=_show(raw), expected=expected, text=text
            )
        value = int(value_text)
        if value < lowest or value > MAX_MIN_COUNT:
            raise SegmentSyntaxError(
                f"{arg} must be between {lowest} and {MAX_MIN_COUNT:,}",
                position=pos,
                found=value_text,
                expected=expected,
                text=text,
            )
        return value
    if arg in MONEY_ARGS:
        expected = ["an amount such as 50 or 49.99"]
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise SegmentSyntaxError(
                f"{arg} must be an amount", position=pos, found=_show(raw), expected=expected, text=text
            )
        value_text = (repr(raw) if isinstance(raw, float) else str(raw)).strip()
        if not _MONEY_RE.match(value_text):
            raise SegmentSyntaxError(
                f"{arg} must be an amount of at least 0 with at most two decimals, such as 50 or 49.99",
                position=pos,
                found=_show(raw),
                expected=expected,
                text=text,
            )
        try:
            amount = Decimal(value_text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            raise SegmentSyntaxError(
                f"{arg} must be an amount", position=pos, found=_show(raw), expected=expected, text=text
            ) from None
        if amount > MAX_MONEY:
            raise SegmentSyntaxError(
                f"{arg} must be at most {MAX_MONEY:,}", position=pos, found=value_text, expected=expected, text=text
            )
        return money_normal(amount)
    if not isinstance(raw, str):
        raise SegmentSyntaxError(f"{arg} must be text", position=pos, found=_show(raw), expected=[f"a {arg} value"])
    if arg in WINDOW_ARGS:
        match = _WITHIN_RE.match(raw.strip().lower())
        if not match:
            raise SegmentSyntaxError(
                f"{arg} must be a number of hours, days or weeks such as 12h, 30d or 8w",
                position=pos,
                found=_show(raw),
                expected=["a duration like 12h, 30d or 8w"],
                text=text,
            )
        number, unit = int(match.group(1)), match.group(2)
        hours = number * WITHIN_UNITS[unit]
        if number < 1 or hours > MAX_WITHIN_HOURS:
            raise SegmentSyntaxError(
                f"{arg} must be at least 1h and at most five years",
                position=pos,
                found=_show(raw),
                expected=["a duration like 12h, 30d or 8w"],
                text=text,
            )
        return f"{number}{unit}"
    if not raw.strip() or len(raw) > 200:
        raise SegmentSyntaxError(
            f"{arg} must be 1 to 200 characters", position=pos, found=_show(raw), expected=[f"a {arg} value"], text=text
        )
    return raw


def money_normal(amount: Decimal) -> Decimal:
    """One spelling per amount (50, 50.0 and 50.00 are the same condition): no trailing zeros, no exponent."""
    normal = amount.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def money_text(amount: Decimal) -> str:
    return format(amount, "f")


def _action_term(
    action: str,
    args: dict[str, Any],
    positions: list[tuple[str, Any]],
    pos: int | str,
    text: str | None,
) -> ActionTerm:
    """Build an action term from validated arguments, checking how they combine; errors name the argument."""
    where = dict(positions)

    def refuse(arg: str, message: str, expected: list[str]) -> SegmentSyntaxError:
        return SegmentSyntaxError(
            message, position=where.get(arg, pos), found=_shown_arg(arg, args.get(arg)), expected=expected, text=text
        )

    if action != "purchased":
        for arg in MONEY_ARGS:
            if arg in args:
                raise refuse(arg, f"{arg} applies to purchased() only: other actions have no amount", ["purchased"])
    if "max_count" in args and "min_count" not in args:
        args["min_count"] = 0
    if args.get("min_count") == 0 and "max_count" not in args:
        raise refuse(
            "min_count",
            "min_count=0 matches everyone; write max_count=0 for consumers who did not, or max_count=N for at most N",
            ["an integer >= 1", "max_count"],
        )
    if "max_count" in args and args["max_count"] < args["min_count"]:
        raise refuse("max_count", f"max_count is below min_count ({args['min_count']})", [f">= {args['min_count']}"])
    for low, high in (("min_spend", "max_spend"), ("min_avg_order", "max_avg_order")):
        if low in args and high in args and args[high] < args[low]:
            raise refuse(high, f"{high} is below {low} ({money_text(args[low])})", [f">= {money_text(args[low])}"])
    if args.get("max_count") == 0:
        for arg in AGGREGATE_ARGS:
            if arg in args:
                raise refuse(
                    arg,
                    f"max_count=0 selects consumers with no matching event, who have no {_ARG_NOUN[arg]}; "
                    f"drop {arg} or max_count",
                    [f"no {arg} with max_count=0"],
                )
    if "within" in args:
        for arg in ("first_within", "last_before"):
            if arg in args:
                raise refuse(
                    arg,
                    f"{arg} looks at all matching events, so it cannot be combined with within; drop one of them",
                    [f"{arg} without within"],
                )
    return ActionTerm(action=action, pos=pos, arg_pos=tuple(positions), **args)


_ARG_NOUN = {
    "min_spend": "spend",
    "max_spend": "spend",
    "min_avg_order": "order value",
    "max_avg_order": "order value",
    "first_within": "first event",
    "last_before": "last event",
}


def _shown_arg(arg: str, value: Any) -> str:
    if value is None:
        return arg
    return money_text(value) if isinstance(value, Decimal) else str(value)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse(text: Any) -> Node:
    """Parse the text form. Raises SegmentSyntaxError, and nothing else, for any input."""
    if not isinstance(text, str):
        raise SegmentSyntaxError(
            "The expression must be text", position=0, found=type(text).__name__, expected=["an expression"]
        )
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise SegmentSyntaxError(
            f"The expression is longer than {MAX_EXPRESSION_LENGTH:,} characters",
            position=MAX_EXPRESSION_LENGTH,
            found=f"{len(text):,} characters",
            expected=["a shorter expression"],
            text=text,
        )
    return _Parser(text).parse()


# ------------------------------------------------------------------------------------------------ JSON form


def from_json(data: Any) -> Node:
    """Parse the JSON form (already decoded). Errors name the JSON path."""
    counter = [0]
    return _from_json(data, "$", 0, counter)


def _from_json(data: Any, path: str, depth: int, counter: list[int]) -> Node:
    if depth > MAX_DEPTH:
        raise SegmentSyntaxError(
            f"Definition nested more than {MAX_DEPTH} levels deep", position=path, found="deeper nesting", expected=[]
        )
    expected = [
        '{"and": [...]}',
        '{"or": [...]}',
        '{"not": ...}',
        '{"tag": {...}}',
        '{"segment": ID}',
        '{"action": ...}',
        '{"likely_to_buy": {...}}',
    ]
    if not isinstance(data, dict):
        raise SegmentSyntaxError(
            "Expected an object describing a term", position=path, found=_json_type(data), expected=expected
        )
    if "action" in data:
        return _action_from_json(data, path, counter)
    if LIKELY_TO_BUY in data:  # product audiences: see the likely_to_buy block
        return _likely_from_json(data, path, counter)
    if len(data) != 1:
        keys = ", ".join(sorted(map(str, data))) or "no keys"
        raise SegmentSyntaxError(
            "Expected exactly one of and, or, not, tag, segment, action", position=path, found=keys, expected=expected
        )
    key, value = next(iter(data.items()))
    if key in ("and", "or"):
        if not isinstance(value, list) or not value:
            raise SegmentSyntaxError(
                f"{key} needs a non-empty list", position=f"{path}.{key}", found=_json_type(value), expected=["a list"]
            )
        operands = [_from_json(item, f"{path}.{key}[{i}]", depth + 1, counter) for i, item in enumerate(value)]
        return _join(And if key == "and" else Or, operands, path)
    if key == "not":
        return Not(_from_json(value, f"{path}.not", depth + 1, counter), path)
    counter[0] += 1
    if counter[0] > MAX_TERMS:
        raise SegmentSyntaxError(f"More than {MAX_TERMS} terms", position=path, found="more terms", expected=[])
    if key == "tag":
        return _tag_from_json(value, f"{path}.tag", path)
    if key == "segment":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
            raise SegmentSyntaxError(
                "segment needs a segment id (a positive integer)",
                position=f"{path}.segment",
                found=_show(value),
                expected=["a segment id"],
            )
        return SegmentTerm(value, path)
    raise SegmentSyntaxError(f"Unknown key {key!r}", position=path, found=_show(key), expected=expected)


def _tag_from_json(value: Any, path: str, pos: str) -> TagTerm:
    if not isinstance(value, dict) or set(value) != {"family", "value"}:
        raise SegmentSyntaxError(
            'tag needs {"family": ..., "value": ...}',
            position=path,
            found=_json_type(value) if not isinstance(value, dict) else ", ".join(sorted(map(str, value))),
            expected=["family", "value"],
        )
    family, tag_value = value["family"], value["value"]
    if not isinstance(family, str) or not _FAMILY_RE.match(family.lower()) or family.lower() in RESERVED_FAMILIES:
        raise SegmentSyntaxError(
            "family must be a tag family name", position=f"{path}.family", found=_show(family), expected=["a family"]
        )
    if not isinstance(tag_value, str) or not tag_value:
        raise SegmentSyntaxError(
            "value must be non-empty text", position=f"{path}.value", found=_show(tag_value), expected=["a value"]
        )
    return TagTerm(family.lower(), tag_value, pos)


def _action_from_json(data: dict, path: str, counter: list[int]) -> ActionTerm:
    counter[0] += 1
    if counter[0] > MAX_TERMS:
        raise SegmentSyntaxError(f"More than {MAX_TERMS} terms", position=path, found="more terms", expected=[])
    action = data["action"]
    if not isinstance(action, str) or action.lower() not in ACTIONS:
        raise SegmentSyntaxError(
            f"action must be one of {', '.join(ACTIONS)}",
            position=f"{path}.action",
            found=_show(action),
            expected=list(ACTIONS),
        )
    arguments = {key: raw for key, raw in data.items() if key != "action"}
    args, positions = _arguments_from_json(arguments, action.lower(), ACTION_ARGS, _action_arg, path)
    return _action_term(action.lower(), args, positions, path, None)


def _arguments_from_json(
    body: dict, name: str, allowed: tuple[str, ...], value_check: Callable[[str, Any, str, None], Any], where: str
) -> tuple[dict[str, Any], list[tuple[str, int | str]]]:
    """The JSON form's arguments of an action or likely_to_buy, refused as the text form refuses them: each one
    of `allowed` (any case), given once (null is left out), its value checked by `value_check`."""
    args: dict[str, Any] = {}
    positions: list[tuple[str, int | str]] = []
    for key, raw in body.items():
        if not isinstance(key, str) or key.lower() not in allowed:
            raise SegmentSyntaxError(
                f"Unknown argument {key!r} for {name}", position=where, found=_show(key), expected=list(allowed)
            )
        if raw is None:
            continue
        arg = key.lower()
        if arg in args:
            raise SegmentSyntaxError(f"Argument {arg} given twice", position=f"{where}.{key}", found=arg, expected=[])
        args[arg] = value_check(arg, raw, f"{where}.{key}", None)
        positions.append((arg, f"{where}.{key}"))
    return args, positions


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def to_json(node: Node) -> dict[str, Any]:
    if isinstance(node, And):
        return {"and": [to_json(n) for n in node.operands]}
    if isinstance(node, Or):
        return {"or": [to_json(n) for n in node.operands]}
    if isinstance(node, Not):
        return {"not": to_json(node.operand)}
    if isinstance(node, TagTerm):
        return {"tag": {"family": node.family, "value": node.value}}
    if isinstance(node, SegmentTerm):
        return {"segment": node.segment_id}
    if isinstance(node, LikelyTerm):
        return _likely_to_json(node)
    data: dict[str, Any] = {"action": node.action}
    for arg, value in _written_args(node):
        # Amounts are JSON numbers: whole ones as integers, others as the shortest float that reads back the same.
        data[arg] = (int(value) if value == value.to_integral_value() else float(value)) if arg in MONEY_ARGS else value
    return data


def _written_args(node: ActionTerm) -> list[tuple[str, Any]]:
    """The arguments the canonical forms write, in ACTION_ARGS order: defaults are left out."""
    written = []
    for arg in ACTION_ARGS:
        value = getattr(node, arg)
        if value is None or (arg == "min_count" and value == node.default_min_count):
            continue
        written.append((arg, value))
    return written


# ------------------------------------------------------------------------------------------------ text form


def quote_value(value: str) -> str:
    """A value as it must be written: bare where that reads back the same, otherwise quoted."""
    if _BARE_VALUE_RE.match(value) and value.lower() not in _KEYWORDS:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_text(node: Node) -> str:
    """The canonical text form: keywords in capitals, parentheses only where precedence needs them."""
    if isinstance(node, Or):
        return " OR ".join(to_text(n) for n in node.operands)
    if isinstance(node, And):
        return " AND ".join(f"({to_text(n)})" if isinstance(n, Or) else to_text(n) for n in node.operands)
    if isinstance(node, Not):
        inner = to_text(node.operand)
        return f"NOT ({inner})" if isinstance(node.operand, And | Or) else f"NOT {inner}"
    if isinstance(node, TagTerm):
        return f"{node.family}:{quote_value(node.value)}"
    if isinstance(node, SegmentTerm):
        return f"segment:{node.segment_id}"
    if isinstance(node, LikelyTerm):
        return _likely_to_text(node)
    args = []
    for arg, value in _written_args(node):
        if arg in COUNT_ARGS:
            args.append(f"{arg}={value}")
        elif arg in MONEY_ARGS:
            args.append(f"{arg}={money_text(value)}")
        else:
            args.append(f'{arg}="{_escape(value)}"')
    return f"{node.action}({', '.join(args)})"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def definition_parse(*, expression: Any = None, definition: Any = None) -> Node:
    """Exactly one of the text form or the JSON form."""
    if (expression is None) == (definition is None):
        raise SegmentSyntaxError(
            "Give either an expression (text) or a definition (JSON), not both or neither",
            position="$",
            found="both" if expression is not None else "neither",
            expected=["expression", "definition"],
        )
    return parse(expression) if expression is not None else from_json(definition)


# ---------------------------------------------------------------- likely_to_buy (product audiences): parsing
# The text form, the JSON form ({"likely_to_buy": {"product": "SKU", "top": 1000}}) and back. Whether the product
# or category is the merchant's own is checked by segments.evaluation.definition_resolve, at the argument.


def _parse_likely(parser: _Parser) -> LikelyTerm:
    name_token, args, positions, closing = parser.parse_call(LIKELY_ARGS, _likely_arg)
    return _likely_term(args, name_token.pos, tuple(positions), closing.pos, parser.text)


def _likely_arg(arg: str, raw: Any, pos: int | str, text: str | None) -> Any:
    if arg == "top":
        value_text = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else None
        if (
            value_text is None
            or not re.fullmatch(r"[0-9]{1,9}", value_text)
            or not 1 <= int(value_text) <= MAX_LIKELY_TOP
        ):
            raise SegmentSyntaxError(
                f"top must be a whole number between 1 and {MAX_LIKELY_TOP:,}",
                position=pos,
                found=_show(raw),
                expected=["an integer >= 1"],
                text=text,
            )
        return int(value_text)
    if not isinstance(raw, str):
        raise SegmentSyntaxError(f"{arg} must be text", position=pos, found=_show(raw), expected=[f"a {arg} value"])
    if arg == "band":
        band = raw.strip().lower()
        if band not in LIKELY_BANDS:
            raise SegmentSyntaxError(
                f"band must be one of {', '.join(LIKELY_BANDS)}",
                position=pos,
                found=_show(raw),
                expected=list(LIKELY_BANDS),
                text=text,
            )
        return band
    if not raw.strip() or len(raw) > 200:
        raise SegmentSyntaxError(
            f"{arg} must be 1 to 200 characters", position=pos, found=_show(raw), expected=[f"a {arg} value"], text=text
        )
    return raw


def _likely_term(
    args: dict[str, Any], pos: int | str, positions: tuple[tuple[str, int | str], ...], end: int | str, text
) -> LikelyTerm:
    if ("product" in args) == ("category" in args):
        raise SegmentSyntaxError(
            f"{LIKELY_TO_BUY} needs exactly one of product and category",
            position=pos,
            found="both" if "product" in args else "neither",
            expected=["product", "category"],
            text=text,
        )
    if "top" in args and "band" in args:
        raise SegmentSyntaxError(
            f"{LIKELY_TO_BUY} takes top or band, not both",
            position=dict(positions)["band"],
            found="band",
            expected=["top", "band"],
            text=text,
        )
    return LikelyTerm(pos=pos, arg_pos=positions, **args)


def _likely_from_json(data: dict, path: str, counter: list[int]) -> LikelyTerm:
    counter[0] += 1
    if counter[0] > MAX_TERMS:
        raise SegmentSyntaxError(f"More than {MAX_TERMS} terms", position=path, found="more terms", expected=[])
    if len(data) != 1 or not isinstance(data[LIKELY_TO_BUY], dict):
        raise SegmentSyntaxError(
            f'{LIKELY_TO_BUY} needs {{"{LIKELY_TO_BUY}": {{"product" or "category": ..., "top" or "band": ...}}}}',
            position=path,
            found=", ".join(sorted(map(str, data))),
            expected=list(LIKELY_ARGS),
        )
    body = data[LIKELY_TO_BUY]
    where = f"{path}.{LIKELY_TO_BUY}"
    args, positions = _arguments_from_json(body, LIKELY_TO_BUY, LIKELY_ARGS, _likely_arg, where)
    return _likely_term(args, path, tuple(positions), path, None)


def _likely_to_json(node: LikelyTerm) -> dict[str, Any]:
    body = {arg: getattr(node, arg) for arg in LIKELY_ARGS if getattr(node, arg) is not None}
    return {LIKELY_TO_BUY: body}


def _likely_to_text(node: LikelyTerm) -> str:
    args = []
    for arg in LIKELY_ARGS:
        value = getattr(node, arg)
        if value is None:
            continue
        args.append(f"{arg}={value}" if arg in ("top", "band") else f'{arg}="{_escape(value)}"')
    return f"{LIKELY_TO_BUY}({', '.join(args)})"


# ------------------------------------------------------------------------ end of the likely_to_buy parsing block
