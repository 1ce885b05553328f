"""Views of the result tables for ``snakemake --report``: one self-contained HTML page per table.

A Parquet file is not something a browser shows; :func:`table_html` renders a table as an HTML
page: its title, the units and provenance from its metadata (:func:`lattherm.io.read_metadata`),
what each column means (:data:`lattherm.io.COLUMNS`), and the rows (numbers to 6 significant
digits; long tables are cut, with the count of rows left out).
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from lattherm.io import COLUMNS

__all__ = ["table_html", "MAX_ROWS"]

#: most rows shown in a view (the Parquet file holds them all)
MAX_ROWS = 2000

_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
h1 { font-size: 16px; } table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; position: sticky; top: 0; } dt { font-weight: bold; }
td.false { background: #fde0dc; }
"""


def _cell(v) -> str:
    if isinstance(v, (bytes, bytearray)):
        return f"{len(v)} bytes"
    if isinstance(v, (float, np.floating)):
        return "NaN" if not np.isfinite(v) else f"{v:.6g}"
    return html.escape(str(v))


def table_html(df: pd.DataFrame, *, title: str, metadata: Mapping | None = None) -> str:
    """A standalone HTML page of ``df`` with its units, provenance and column meanings."""
    meta = dict(metadata or {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    units = meta.pop("units", None)
    if meta:
        prov = ", ".join(f"{k} {v}" for k, v in meta.items())
        parts.append(f"<p>{html.escape(prov)}</p>")
    if units:
        parts.append("<p><b>Units</b>: " + html.escape("; ".join(f"{k}: {v}" for k, v in units.items())) + "</p>")
    known = [c for c in df.columns if c in COLUMNS]
    if known:
        parts.append("<dl>" + "".join(f"<dt>{c}</dt><dd>{html.escape(COLUMNS[c])}</dd>" for c in known) + "</dl>")
    shown = df.head(MAX_ROWS)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    parts.append(f"<table><thead><tr>{header}</tr></thead><tbody>")
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            cls = " class='false'" if v is False or (isinstance(v, np.bool_) and not v) else ""
            cells.append(f"<td{cls}>{_cell(v)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    if len(df) > len(shown):
        parts.append(f"<p>{len(df) - len(shown)} more rows in the Parquet file.</p>")
    parts.append("</body></html>")
    return os.linesep.join(parts)
