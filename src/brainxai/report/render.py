"""The report's HTML: sections of text, tables and figures rendered by a jinja2 template
shipped with the package (``templates/report.html.j2``).

Self-contained by construction: CSS is inline in the template, images are ``data:`` URIs,
tables come from ``DataFrame.to_html(escape=True)``, every other string is autoescaped.
"""

from __future__ import annotations

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
    ``figure``, ``items`` (a bullet list) or ``threat`` (title and status in
    ``items``, finding in ``text``, what it means in ``caption``)."""

    kind: str
    text: str = ""
    html: Markup | None = None
    figure: Figure | None = None
    items: tuple[str, ...] = ()
    caption: str = ""
    css: str = ""


def text(s: str) -> Block:
    return Block("text", text=s)


def items(values: list[str] | tuple[str, ...], caption: str = "") -> Block:
    return Block("items", items=tuple(values), caption=caption)


def table(frame: pd.DataFrame, caption: str = "") -> Block:
    """A DataFrame as an HTML table (text escaped, missing values as ``—``)."""
    html = frame.to_html(index=False, escape=True, border=0, na_rep="—", classes="tbl")
    return Block("table", html=Markup(html), caption=caption)


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
