"""The report's HTML: sections of text, tables and figures rendered by a jinja2 template
shipped with the package (``templates/report.html.j2``).

Self-contained by construction: CSS is inline in the template, images are ``data:`` URIs,
tables come from ``DataFrame.to_html(escape=True)``, every other string is autoescaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from brainxai.atomic import write_text_atomic
from brainxai.report.figures import Figure

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Block:
    """One piece of a section: ``text`` (a paragraph), ``table`` (escaped HTML),
    ``figure``, ``items`` (a bullet list), ``threat`` (title and status in
    ``items``, finding in ``text``, what it means in ``caption``), ``statuses`` (a bullet
    list of ``(status, sentence)`` in ``rows``, each with its status badge) or
    ``status_table`` (``columns`` and ``rows`` of text; the cells of the column named in
    ``text`` coloured by status)."""

    kind: str
    text: str = ""
    html: Markup | None = None
    figure: Figure | None = None
    items: tuple[str, ...] = ()
    caption: str = ""
    css: str = ""
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def text(s: str) -> Block:
    return Block("text", text=s)


def items(values: list[str] | tuple[str, ...], caption: str = "") -> Block:
    return Block("items", items=tuple(values), caption=caption)


def table(frame: pd.DataFrame, caption: str = "") -> Block:
    """A DataFrame as an HTML table (text escaped, missing values as ``—``)."""
    html = frame.to_html(index=False, escape=True, border=0, na_rep="—", classes="tbl")
    return Block("table", html=Markup(html), caption=caption)


def statuses(rows: Sequence[tuple[str, str]], caption: str = "") -> Block:
    """``(status, sentence)`` pairs as a list, each sentence behind its status badge."""
    return Block("statuses", rows=tuple((str(a), str(b)) for a, b in rows), caption=caption)


def status_table(frame: pd.DataFrame, caption: str = "", column: str = "status") -> Block:
    """A table whose ``column`` cells are coloured by their status (missing values ``—``)."""
    cells = tuple(
        tuple("—" if v is None or (isinstance(v, float) and v != v) else str(v) for v in row)
        for row in frame.itertuples(index=False, name=None)
    )
    return Block(
        "status_table", text=column, columns=tuple(map(str, frame.columns)), rows=cells,
        caption=caption,
    )  # fmt: skip


def threat(title: str, status: str, finding: str, meaning: str) -> Block:
    return Block("threat", text=finding, items=(title, status), caption=meaning)


def figure(fig: Figure | None, missing: str = "", css: str = "") -> Block:
    """A figure (``css="half"``: two side by side); ``missing`` is said when there is none."""
    if fig is None:
        return text(missing or "No data for this figure.")
    return Block("figure", figure=fig, caption=fig.caption, css=css)


@dataclass
class Section:
    """A report section; ``ran`` False renders the "not run" notice with ``missing``, or
    the error that stopped it (``error``)."""

    id: str
    title: str
    ran: bool = True
    missing: list[str] = field(default_factory=list)
    error: str = ""
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


def render_html(title: str, subtitle: str, sections: list[Section], meta: dict[str, Any]) -> str:
    env = Environment(
        loader=PackageLoader("brainxai.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE).render(
        title=title, subtitle=subtitle, sections=sections, meta=meta
    )


def write_html(path: Path, html: str) -> Path:
    write_text_atomic(path, html, encoding="utf-8")
    return path
