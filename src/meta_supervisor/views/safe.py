"""Names from inputs are data, never markup: the one escaping helper of every renderer.

Agent and strategy names, override reasons, quarantined raw text and the like come from files
an outsider may write. Names are validated at ingest
(:data:`meta_supervisor.ingest.records.NAME_PATTERN`), but a renderer cannot assume that every
name it shows went through ingest (the seed's stats dicts, an edited overrides file, a history
written by an older version), so each renderer escapes what it shows:

* :func:`visible`: control characters (terminal escape sequences start with ESC), bidirectional
  overrides and invisible characters (zero-width spaces, which make two names look the same)
  become visible escapes such as ``\\x1b`` or ``\\u200b``. Everything else is unchanged.
* :func:`term`: for a rich table cell or text: a :class:`rich.text.Text` of :func:`visible`
  (a ``Text`` is never parsed as markup, so ``[/bold]x`` is shown as written).
* :func:`markup`: for text interpolated into a rich markup string (titles, printed lines).
* :func:`md`: for Markdown that may be rendered to HTML (the LP memo): the characters that
  could open an HTML tag or entity, a link, code or emphasis (``& < [ ] ` * ~`` and an ``_`` at
  a word's edge) become numeric character references (``&#60;``), which render as the
  character itself and survive table-cell escaping unchanged (table cells escape ``|`` and
  ``\\`` themselves).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from rich.markup import escape as _rich_escape
from rich.text import Text

__all__ = ["markup", "md", "term", "visible"]

# Cc: C0 and C1 controls (ESC, CR, BEL, ...); Cf: format characters (bidi overrides, zero-width
# joiners, BOM); Zl/Zp: line and paragraph separators. Tabs and newlines are kept as text only
# where a renderer asks for several lines; a name never holds one.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Co", "Cn"}
_MD_SPECIAL = re.compile(r"[&<\[\]`*~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _shown(char: str) -> str:
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def visible(value: Any) -> str:
    """``value`` as text with every control, format or invisible character made visible."""
    text = "" if value is None else str(value)
    if text.isprintable() and text.isascii():
        return text
    return "".join(_shown(c) if unicodedata.category(c) in _HIDDEN else c for c in text)


def term(value: Any, style: str = "") -> Text:
    """A rich ``Text`` (never parsed as markup) of :func:`visible` ``value``."""
    return Text(visible(value), style=style)


def markup(value: Any) -> str:
    """:func:`visible` ``value`` escaped for a rich markup string (``[`` cannot open a tag)."""
    return _rich_escape(visible(value))


def md(value: Any) -> str:
    """:func:`visible` ``value`` escaped for Markdown rendered to HTML (no tag, link or cell)."""
    return _MD_SPECIAL.sub(lambda m: f"&#{ord(m.group())};", visible(value))
