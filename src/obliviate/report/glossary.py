"""The report card's reading aids, generated from `evaluate.metrics.METRICS`: the ↑ / ↓ of every column header, the
names the tables, "Not computed" and the glossary share, and the glossary itself.

    arrowed("forget ROUGE")                    # "forget ROUGE ↓"  (unlearning should lower it on the forget split)
    arrowed("Prob + string", role="forget")    # an attack's column scoring forget items: "Prob + string ↓"
    arrowed("MIA AUC (Min-K)")                 # "MIA AUC (Min-K) → 0.5"  (closest to 0.5 is best)
    term("cosine_similarity")                  # "CS": the label every table uses (also for eval.json's aggregate keys)
    glossary_rows([("forget ROUGE", ""), ("retain ROUGE", ""), ("Forget Quality", "")])
    # [["ROUGE", "rouge_l_recall", "↓ forget · ↑ retain", "ROUGE-L recall …", "TOFU (Maini et al. 2024)"],
    #  ["Forget Quality / FQ", "forget_quality", "↑", "KS-test p-value: …", "TOFU (Maini et al. 2024)"]]
    unexplained(headers)   # the headers naming no metric record (and not a plain column): must be []

A header names a metric when the metric's `label` or `abbrev` appears in it as a word ("forget TR", "Prob +
string", "AUC Min-K%"). Plain columns (model, seeds, step, …) name none and get no arrow.

Which way is better, for an unlearned model (forget what it should, keep the rest): a header's role is the first
split word in it (forget, retain, world, neighbour, general), else the table's role (an attack's `role`: the split
its columns score), else none. The metric's `card` entry for that role decides; without one, an item metric's
`higher_is_better` (stated for keeping knowledge) flips on the forget split. Corpus metrics shown as aggregates
(Forget Quality, Model Utility, Forget Efficacy, …) are stated from the unlearning view already and never flip.
A metric with no better direction (`higher_is_better` None) reads "→ best": closest to its `best` value is best;
a "gap" column (a difference to the retain model) reads "→ 0".
"""

from __future__ import annotations

import re

from obliviate.evaluate.metrics import METRICS

# columns every table may show that are no metric: names, counts, settings
PLAIN_COLUMNS = ("model", "recipe", "seeds", "seed", "step", "items", "search s", "split", "weights")
ROLE_WORDS = {"forget": "forget", "retain": "retain", "world": "world_facts", "neighbour": "retain",
              "neighbours": "retain", "general": "retain"}
ROLE_NAMES = {"forget": "forget", "retain": "retain", "world_facts": "world"}
ARROW_NOTE = ("↑ higher is better, ↓ lower is better, → x closest to x is best (→ retain: closest to the retain "
              "model's value) — for an unlearned model, which should lose the forget split and keep the rest (so one "
              "metric can be ↓ on forget and ↑ on retain).")


def _terms() -> dict[str, str]:
    """{label or abbreviation: METRICS key}."""
    out: dict[str, str] = {}
    for key, m in METRICS.items():
        for term_ in (m.label, m.abbrev):
            if term_:
                out.setdefault(term_, key)
    return out


def metrics_named(header: str) -> list[str]:
    """METRICS keys whose label or abbreviation appears in `header` as a word, in order of appearance; a name
    inside a longer one ("FE" and "ES" in "FE (no ES)") does not count."""
    found = []
    for term_, key in _terms().items():
        m = re.search(rf"(?<![\w-]){re.escape(term_)}(?![\w-]|%)", header)
        if m:
            found.append((m.start(), -len(term_), key))
    kept: list[tuple[int, int, str]] = []
    for start, neg_len, key in sorted(found):
        if not any(s <= start and start - neg_len <= e for s, e, _ in kept):
            kept.append((start, start - neg_len, key))
    return list(dict.fromkeys(k for _, _, k in kept))


def unexplained(headers: list[str]) -> list[str]:
    """Headers that are no plain column and name no metric record: each needs a `METRICS` record."""
    return [h for h in dict.fromkeys(headers) if h not in PLAIN_COLUMNS and not metrics_named(h)]


def term(key: str) -> str:
    """The name tables show for a METRICS key, an aggregate key of eval.json ("mia") or a not-computed key
    ("split:holdout", "forget_icl"); the key itself when nothing names it."""
    m = METRICS.get(key) or next((m for m in METRICS.values() if m.aggregate == key and m.label), None)
    if m is not None and (m.label or m.abbrev):
        return m.label or m.abbrev
    if key.startswith("split:"):
        return f"{key[6:]} split"
    if key.endswith("_icl"):
        return f"{key[:-4]} in-context shots"
    return key


def _role(header: str, role: str, keys: list[str]) -> str:
    """The first split word of `header` outside the named metrics' own names ("KnowMem forget" names no split)."""
    for key in keys:
        for t in (METRICS[key].label, METRICS[key].abbrev):
            header = header.replace(t, " ") if t else header
    return next((ROLE_WORDS[w] for w in re.findall(r"[\w-]+", header) if w in ROLE_WORDS), role)


def better(key: str, role: str = "") -> bool | None:
    """Is higher better for `key` on `role` ("" = no split), for an unlearned model? None: a target value."""
    m = METRICS[key]
    entries = {r: hib for r, hib, *_ in m.card}
    if "agg" in entries:
        return entries["agg"]
    if role in entries:
        return entries[role]
    if role == "forget" and m.higher_is_better is not None:
        return not m.higher_is_better
    return m.higher_is_better


def symbol(key: str, role: str = "", header: str = "") -> str:
    """↑, ↓ or "→ best" of `key` on `role`; a "gap" header (a difference to the retain model) reads "→ 0"."""
    if re.search(r"\bgap\b", header):
        return "→ 0"
    hib = better(key, role)
    if hib is None:
        return f"→ {METRICS[key].best or 'target'}"
    return "↑" if hib else "↓"


def reading(header: str, role: str = "") -> tuple[str, str, str] | None:
    """(metric key, role, symbol) of a header naming a metric (its first), else None."""
    keys = metrics_named(header)
    if header in PLAIN_COLUMNS or not keys:
        return None
    role = _role(header, role, keys)
    return keys[0], role, symbol(keys[0], role, header)


def arrowed(header: str, role: str = "") -> str:
    """`header` with its ↑ / ↓ / → best (unchanged when it names no metric)."""
    r = reading(header, role)
    return f"{header} {r[2]}" if r else header


def glossary_rows(shown: list) -> list[list[str]]:
    """[name / abbreviation, key, better (per split, as the card's headers show it), description, paper] of every
    metric the headers name; `shown` holds headers or (header, table role) pairs. A metric named only inside
    another's header ("FE (no ES)") gets its direction off any split."""
    ways: dict[str, dict[str, list[str]]] = {}
    inner: list[str] = []
    for item in shown:
        header, role = (item, "") if isinstance(item, str) else item
        keys = [] if header in PLAIN_COLUMNS else metrics_named(header)
        if not keys:
            continue
        role = _role(header, role, keys)
        names = ways.setdefault(keys[0], {}).setdefault(symbol(keys[0], role), [])
        if ROLE_NAMES.get(role) and ROLE_NAMES[role] not in names and better_varies(keys[0]):
            names.append(ROLE_NAMES[role])
        inner += keys[1:]
    for key in inner:
        ways.setdefault(key, {symbol(key): []})
    rows = []
    for key, by in ways.items():
        m = METRICS[key]
        name = " / ".join(t for t in (m.label, m.abbrev) if t)
        way = " · ".join(f"{sym} {', '.join(roles)}".strip() for sym, roles in by.items())
        rows.append([name, key, way, m.description, m.paper])
    return rows


def in_words(text: str) -> str:
    """`text` (a not-computed reason) with the METRICS keys it names ("needs entailment_score") in the card's
    names ("needs ES")."""
    for key in METRICS:
        if "_" in key:
            text = re.sub(rf"\b{key}\b", term(key), text)
    return text


def better_varies(key: str) -> bool:
    """Does the better direction of `key` depend on the split (so the glossary names the splits)?"""
    return len({better(key, r) for r in ("forget", "retain", "world_facts")}) > 1
