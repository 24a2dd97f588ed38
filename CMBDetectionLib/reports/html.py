"""Building blocks of the HTML reports: escaping, embedded PNGs, tables, the page, and writing files atomically.

Every value put into a page goes through :func:`escape`; pictures are embedded as ``data:`` URIs, so a report
is one file that opens offline, mailed or archived, with nothing beside it.

>>> table(["id", "region"], [[1, "<b>x</b>"]])
'<table><thead><tr><th>id</th><th>region</th></tr></thead><tbody><tr><td>1</td><td>&lt;b&gt;x&lt;/b&gt;</td></tr></tbody></table>'
>>> image(b"\\x89PNG", "montage")[:40]
'<img alt="montage" src="data:image/png;b'
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 16px 24px 40px; color: #1d2430; background: #fff; }
h1 { font-size: 1.45em; margin: 0.3em 0 0.1em; } h2 { font-size: 1.15em; margin-top: 1.6em;
     border-bottom: 2px solid #dfe4ec; padding-bottom: 3px; }
.note { color: #6a7280; font-size: 0.85em; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid #dfe4ec; border-radius: 6px; padding: 8px 14px; min-width: 90px; }
.card b { display: block; font-size: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 6px 0; }
th, td { border: 1px solid #dfe4ec; padding: 3px 8px; text-align: left; }
th { background: #f3f5f9; } tr.total td { font-weight: 600; background: #f8f9fb; }
img { max-width: 100%; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }
.lesion { border: 1px solid #dfe4ec; border-radius: 6px; padding: 6px; }
.lesion table { width: 100%; margin: 4px 0 0; }
.tag { border-radius: 3px; padding: 0 5px; font-size: 0.85em; color: #fff; }
.definite { background: #b8322a; } .possible { background: #c98a1a; }
.warn { color: #8a4b00; background: #fff4e0; border-left: 4px solid #e39a20; padding: 4px 10px; margin: 3px 0; }
.failed { color: #8a1010; }
@media print { .gallery { grid-template-columns: repeat(2, 1fr); } }
"""


class Html(str):
    """Text that is HTML already (a link built from escaped parts): :func:`escape` leaves it as it is."""


def escape(value: Any) -> str:
    """``value`` as text safe inside HTML (``None`` as an empty cell; :class:`Html` unchanged).

    >>> escape("a < b"), escape(Html("<a href='x'>x</a>"))
    ('a &lt; b', "<a href='x'>x</a>")
    """
    if isinstance(value, Html):
        return str(value)
    return "" if value is None else html.escape(str(value))


def shown(value: Any) -> Any:
    """A setting as a reader expects it: ``on``/``off`` for flags, ``default`` for None.

    >>> shown(True), shown(None), shown(0.03)
    ('on', 'default', 0.03)
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    return "default" if value is None else value


def image(png: bytes, alt: str) -> str:
    """An ``<img>`` holding ``png`` as a base64 data URI."""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] = ()) -> str:
    """A table of escaped cells (no header row when ``headers`` is empty); ``row_classes[n]`` is the CSS class of
    row ``n`` (e.g. ``total``)."""
    head = "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = []
    for n, row in enumerate(rows):
        css = f' class="{row_classes[n]}"' if n < len(row_classes) and row_classes[n] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def cards(values: Sequence[tuple[str, Any]]) -> str:
    """Big numbers with a caption: ``[("CMBs", 4), ...]``."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{escape(value)}</b>{escape(caption)}</div>' for caption, value in values) + "</div>"


def warnings(messages: Sequence[str]) -> str:
    """Each message as a highlighted line (nothing when there are none)."""
    return "".join(f'<div class="warn">{escape(m)}</div>' for m in messages)


def page(title: str, body: str) -> str:
    """A complete HTML document: ``title`` (escaped here) and ``body`` (HTML built with these helpers)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{body}</body></html>\n")


def write_text_atomically(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: into a hidden file beside it, flushed, then renamed over it,
    so a reader or a kill sees the old file or the new one, never a part."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path
