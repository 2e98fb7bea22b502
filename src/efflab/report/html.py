"""Markdown -> one self-contained HTML file (markdown-it-py; every figure embedded as a base64 PNG)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from markdown_it import MarkdownIt

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1280px;margin:16px auto;
padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.45em;margin:.2em 0 .3em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #eee}
h3{font-size:1.05em}p.lede{font-size:.95em;color:#333;margin:.2em 0}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.84em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}img{max-width:100%;margin:.2em 0}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}li{margin:.1em 0}
h1+p{font-size:.9em;margin:0}ul:first-of-type{font-size:.9em;margin:.1em 0;padding-left:1.4em}
"""


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    default_image = md.renderer.rules.get("image")

    def image(tokens, idx, options, env):
        tok = tokens[idx]
        src = tok.attrGet("src") or ""
        p = Path(env["base"]) / src
        if p.is_file() and p.suffix.lower() == ".png":
            tok.attrSet("src", "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode())
        return default_image(tokens, idx, options, env)

    md.renderer.rules["image"] = image
    return md


def markdown_to_html(text: str, base: Path, *, title: str = "efflab report") -> str:
    """HTML of `text` (markdown) with every PNG it references (relative to `base`) embedded."""
    body = _renderer().render(text, {"base": str(base)})
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>\n{body}</body></html>\n"
    )
