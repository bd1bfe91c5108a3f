"""The report as one self-contained HTML page (figures embedded as data URIs) beside its Markdown: MLflow's
artifact viewer shows an HTML artifact with its images, while it shows ``report.md`` as text, its image links
as literal ``[learning curves](learning_curves.png)``.

The converter knows the Markdown that :mod:`initsweep.report.comparison` writes, no more: headings, tables,
images on a line of their own, paragraphs, and `code` spans.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:0.9em;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px}"
    "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"
)


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _image(alt: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = _MIME.get(path.suffix, "application/octet-stream")
    return f'<p><img alt="{html.escape(alt)}" src="data:{mime};base64,{data}"></p>'


def _table(rows: list[str]) -> str:
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows if not re.fullmatch(r"\|[-|]+\|", r)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(markdown: str, directory: Path) -> str:
    """The page of ``markdown`` whose image links name files in ``directory``."""
    out: list[str] = []
    title = ""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if heading := re.match(r"^(#{1,6}) (.*)$", line):
            level = len(heading[1])
            title = title or heading[2]
            out.append(f"<h{level}>{_inline(heading[2])}</h{level}>")
        elif image := _IMAGE.match(line):
            out.append(_image(image["alt"], directory / image["src"]))
        elif line.startswith("|"):
            start = i
            while i + 1 < len(lines) and lines[i + 1].startswith("|"):
                i += 1
            out.append(_table(lines[start : i + 1]))
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style>'
    return f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(out) + "\n</body></html>\n"


def write_html(report: Path) -> Path:
    """``report.html`` beside the Markdown ``report``, its figures embedded; its path."""
    path = report.with_suffix(".html")
    path.write_text(to_html(report.read_text(), report.parent), encoding="utf-8")
    return path
