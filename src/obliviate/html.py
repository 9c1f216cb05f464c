"""Building blocks of a self-contained HTML report (opens offline: no external assets).

    page = render_page("Demo", [section("Results", table_html(headers, rows)),
                                section("Curves", figure_html(fig, "relearning curve"))])
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
color:#1b1f24;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;
text-align:right;vertical-align:top}th{background:#f6f8fa}td.l,th.l{text-align:left}
td.l{max-width:24rem;overflow-wrap:break-word}
tr:nth-child(even) td{background:#fbfcfd}
figure{display:inline-block;margin:.5rem 1rem .5rem 0}figcaption{font-size:.85rem;color:#57606a}
img{max-width:100%}pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.8rem}
.note{color:#57606a;font-size:.9rem}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to short strings; None / NaN to an em dash; strings unchanged."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "—"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}"
    return str(value)


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left_cols: int = 1) -> str:
    """An HTML table; the first `left_cols` columns are left-aligned (labels), the rest right-aligned."""
    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="l"' if i < left_cols else ""
        return f"<{tag}{cls}>{esc(fmt(v))}</{tag}>"
    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as GitHub Markdown."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |" for r in rows]
    return "\n".join(lines)


def figure_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it. Every text is drawn literally, never parsed as
    mathtext: labels carry recipe names, model paths and split names, and a `$…$` in one (a path such as
    `models/$x$`) would otherwise be typeset or fail to parse. Our labels use Unicode (ε, λ), not mathtext."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    buf = io.BytesIO()
    try:
        for text in fig.findobj(Text):
            text.set_parse_math(False)
        with plt.rc_context({"text.parse_math": False}):  # texts made while drawing (tick labels)
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def image_html(png: bytes, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">{cap}</figure>'


def figure_html(fig, caption: str = "") -> str:
    return image_html(figure_png(fig), caption)


def section(title: str, *parts: str, level: int = 2) -> str:
    return f"<section><h{level}>{esc(title)}</h{level}>{''.join(parts)}</section>"


def paragraph(text: str, *, note: bool = False) -> str:
    cls = ' class="note"' if note else ""
    return f"<p{cls}>{esc(text)}</p>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def render_page(title: str, sections: Sequence[str], *, subtitle: str = "") -> str:
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{sub}{''.join(sections)}</body></html>\n")
