"""Stop, guard and selection rules over the in-training probe's metrics: a small grammar, never `eval`.

    rule = parse_rule("forget_prob <= retain:forget_prob + 0.05", known_metrics=probe.names)
    rule.holds(current, start=start_metrics, reference=retain_metrics)          # -> bool
    sel = parse_select("max forget_gap subject to retain_prob >= 0.95 * start", probe.names)
    sel.admissible(current, start, reference), sel.score(current, start, reference)

Grammar (a tokenizer and a recursive-descent parser)::

    rule       := comparison ("and" comparison)*  |  "match:retain"
    comparison := expr ("<=" | ">=" | "<" | ">") expr
    expr       := term (("+" | "-" | "−") term)*
    term       := factor (("*" | "×") factor)*
    factor     := NUMBER | METRIC | "start" | "start:" METRIC | "retain:" METRIC | "(" expr ")" | ("-" | "−") factor
    select     := ("min" | "max") expr ["subject to" rule]

METRIC is a probe metric name (`evaluate.probes`: forget_prob, retain_prob, forget_truth_ratio, mia_auc, …).
`start` alone is the start (step 0) value of the comparison's one metric on its left-hand side
(`retain_prob >= 0.9 * start`); `start:<metric>` names it; `retain:<metric>` is that metric of the reference
model (a retain or holdout model's eval.json, `--reference-eval`). `match:retain` is
`forget_prob <= retain:forget_prob`: forgotten down to the retain model's level. A metric the probe could not
compute (None or NaN) makes its comparison false: a stop rule does not fire, a guard fails.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from obliviate import ObliviateError

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|(?P<ref>(?:retain|start|match):[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|<|>|\+|-|−|\*|×|\(|\)))")
COMPARISONS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
               ">": lambda a, b: a > b}
MATCH_RETAIN = "forget_prob <= retain:forget_prob"


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, value) tokens of `text`; kind in num, ref, name, op."""
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ObliviateError(f"rule {text!r}: cannot read {text[pos:].strip()[:20]!r} (position {pos})")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


@dataclass(frozen=True)
class Expr:
    """A parsed arithmetic expression: ("num", v) | ("metric", name) | ("start", name|None) |
    ("retain", name) | (op, left, right) | ("neg", e)."""

    node: tuple

    def leaves(self) -> list[tuple]:
        """Its number / metric / start / retain nodes, left to right."""
        kind = self.node[0]
        if kind in ("+", "-", "*"):
            return self.node[1].leaves() + self.node[2].leaves()
        return self.node[1].leaves() if kind == "neg" else [self.node]

    def metrics(self) -> set[str]:
        """The probe metrics it reads now (not start: or retain: values)."""
        return {leaf[1] for leaf in self.leaves() if leaf[0] == "metric"}

    def names(self) -> set[str]:
        """Every metric name it mentions (now, start: and retain:)."""
        return {leaf[1] for leaf in self.leaves() if leaf[0] in ("metric", "start", "retain") and leaf[1]}

    def references(self) -> set[str]:
        """The metrics it reads from the reference model (retain:<metric>)."""
        return {leaf[1] for leaf in self.leaves() if leaf[0] == "retain"}

    def reads_reference(self) -> bool:
        return bool(self.references())

    def value(self, current: dict, start: dict | None, reference: dict | None) -> float:
        kind = self.node[0]
        if kind == "num":
            return self.node[1]
        if kind == "metric":
            return _get(current, self.node[1], "current")
        if kind == "start":
            return _get(start, self.node[1], "start")
        if kind == "retain":
            return _get(reference, self.node[1], "reference")
        if kind == "neg":
            return -self.node[1].value(current, start, reference)
        a, b = self.node[1].value(current, start, reference), self.node[2].value(current, start, reference)
        return a + b if kind == "+" else a - b if kind == "-" else a * b


def _get(values: dict | None, name: str, what: str) -> float:
    if values is None:
        raise ObliviateError(f"rule needs {what} metric values ({name}) and has none"
                             + (" (give --reference-eval)" if what == "reference" else ""))
    v = values.get(name)
    return math.nan if v is None else float(v)


@dataclass(frozen=True)
class Rule:
    """A conjunction of comparisons; `text` is what the user wrote."""

    text: str
    comparisons: tuple = field(default=())  # (Expr, op, Expr)

    def metrics(self) -> set[str]:
        return set().union(*(a.names() | b.names() for a, _, b in self.comparisons))

    def references(self) -> set[str]:
        return set().union(*(a.references() | b.references() for a, _, b in self.comparisons))

    def reads_reference(self) -> bool:
        return bool(self.references())

    def holds(self, current: dict, start: dict | None = None, reference: dict | None = None) -> bool:
        """Whether every comparison holds; a NaN / missing metric makes it false."""
        for a, op, b in self.comparisons:
            x, y = a.value(current, start, reference), b.value(current, start, reference)
            if math.isnan(x) or math.isnan(y) or not COMPARISONS[op](x, y):
                return False
        return True

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Selection:
    """`min|max expr [subject to rule]`: which evaluation point a `keep=best` run keeps."""

    text: str
    direction: str  # "min" | "max"
    expr: Expr
    constraint: Rule | None = None

    def metrics(self) -> set[str]:
        return self.expr.names() | (self.constraint.metrics() if self.constraint else set())

    def references(self) -> set[str]:
        return self.expr.references() | (self.constraint.references() if self.constraint else set())

    def reads_reference(self) -> bool:
        return bool(self.references())

    def admissible(self, current: dict, start: dict | None = None, reference: dict | None = None) -> bool:
        ok = self.constraint is None or self.constraint.holds(current, start, reference)
        return ok and not math.isnan(self.score(current, start, reference))

    def score(self, current: dict, start: dict | None = None, reference: dict | None = None) -> float:
        """The value to minimise / maximise (NaN when a metric is missing)."""
        return self.expr.value(current, start, reference)

    def better(self, score: float, best: float | None) -> bool:
        """Strictly better than `best` (ties keep the earlier point)."""
        return best is None or (score < best if self.direction == "min" else score > best)

    def __str__(self) -> str:
        return self.text


class _Parser:
    def __init__(self, text: str, known: set[str] | None):
        self.text, self.known = text, known
        self.toks = _tokens(text)
        self.i = 0
        self.left_metric: str | None = None  # the metric bare `start` refers to

    def fail(self, why: str) -> ObliviateError:
        return ObliviateError(f"rule {self.text!r}: {why}")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.fail("ends too early")
        self.i += 1
        return tok

    def metric(self, name: str) -> str:
        if self.known is not None and name not in self.known:
            raise self.fail(f"unknown metric {name!r}; the probe gives {', '.join(sorted(self.known)) or 'none'}")
        return name

    def rule(self) -> Rule:
        comparisons = [self.comparison()]
        while self.peek() == ("name", "and"):
            self.take()
            comparisons.append(self.comparison())
        return Rule(self.text, tuple(comparisons))

    def comparison(self) -> tuple:
        self.left_metric = None
        mark = self.i
        left = self.expr(left_side=True)
        ms = left.metrics()
        self.left_metric = next(iter(ms)) if len(ms) == 1 else None
        self.i = mark  # parse the left side again, now that a bare `start` in it can be resolved
        left = self.expr(left_side=False)
        kind, op = self.take()
        if op not in COMPARISONS:
            raise self.fail(f"expected a comparison (<=, >=, <, >), got {op!r}")
        return left, op, self.expr(left_side=False)

    def expr(self, left_side: bool) -> Expr:
        e = self.term(left_side)
        while self.peek() in (("op", "+"), ("op", "-"), ("op", "−")):
            op = "+" if self.take()[1] == "+" else "-"
            e = Expr((op, e, self.term(left_side)))
        return e

    def term(self, left_side: bool) -> Expr:
        e = self.factor(left_side)
        while self.peek() in (("op", "*"), ("op", "×")):
            self.take()
            e = Expr(("*", e, self.factor(left_side)))
        return e

    def factor(self, left_side: bool) -> Expr:
        kind, value = self.take()
        if kind == "num":
            return Expr(("num", float(value)))
        if kind == "op" and value in ("-", "−"):
            return Expr(("neg", self.factor(left_side)))
        if kind == "op" and value == "(":
            e = self.expr(left_side)
            if self.take() != ("op", ")"):
                raise self.fail("missing ')'")
            return e
        if kind == "ref":
            where, name = value.split(":", 1)
            if where == "match":
                raise self.fail("match:retain is a whole rule on its own")
            return Expr((where, self.metric(name)))
        if kind == "name" and value == "start":
            if left_side:
                return Expr(("start", None))
            if self.left_metric is None:
                raise self.fail("bare 'start' needs exactly one metric on the left of the comparison; "
                                "write start:<metric>")
            return Expr(("start", self.left_metric))
        if kind == "name" and value not in ("and", "subject", "to", "min", "max"):
            return Expr(("metric", self.metric(value)))
        raise self.fail(f"expected a number, metric, start or retain:<metric>, got {value!r}")


def parse_rule(text: str, known_metrics=None) -> Rule:
    """A stop / guard rule; `known_metrics` (the probe's `.names`) checks every metric name, None skips that."""
    if not isinstance(text, str) or not text.strip():
        raise ObliviateError(f"rule {text!r}: empty")
    known = set(known_metrics) if known_metrics is not None else None
    if text.strip() == "match:retain":
        return Rule(text.strip(), parse_rule(MATCH_RETAIN, known).comparisons)
    p = _Parser(text.strip(), known)
    rule = p.rule()
    if p.peek() is not None:
        raise p.fail(f"unexpected {p.peek()[1]!r}")
    return rule


def parse_select(text: str, known_metrics=None) -> Selection:
    """`min <expr>` or `max <expr> subject to <rule>`: the selection of a keep=best run."""
    if not isinstance(text, str) or not text.strip():
        raise ObliviateError(f"select {text!r}: empty; write e.g. 'min forget_prob'")
    words = text.strip().split(None, 1)
    if words[0] not in ("min", "max") or len(words) < 2:
        raise ObliviateError(f"select {text!r}: starts with min or max, then an expression (e.g. 'min forget_prob')")
    parts = re.split(r"\s+subject\s+to\s+", words[1], maxsplit=1)
    constraint = parse_rule(parts[1], known_metrics) if len(parts) == 2 else None
    p = _Parser(parts[0], set(known_metrics) if known_metrics is not None else None)
    expr = p.expr(left_side=False)  # bare `start` has no left-hand metric here: the parser says so
    if p.peek() is not None:
        raise p.fail(f"unexpected {p.peek()[1]!r}")
    return Selection(text.strip(), words[0], expr, constraint)
