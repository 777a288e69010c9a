"""The escaping helper (:mod:`meta_supervisor.views.safe`), fuzzed: no text escapes it."""

from __future__ import annotations

import io
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from meta_supervisor.views.safe import markup, md, term


def _render(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=400, color_system=None, force_terminal=False).print(renderable)
    return out.getvalue()


def _no_raw_controls(text: str) -> None:
    hidden = [c for c in text if unicodedata.category(c) in {"Cc", "Cf"} and c != "\n"]
    assert not hidden, hidden


def test_look_alike_names_render_differently() -> None:
    """Two names could be made to look the same (an invisible character, a markup tag)."""
    pairs = [("atlas", "atlas\u200b"), ("atlas", "[red]atlas[/red]"), ("atlas", "\u202eatlas")]
    for a, b in pairs:
        assert _render(term(a)) != _render(term(b))
        assert md(a) != md(b)


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_markup_round_trips_through_rich(text: str) -> None:
    """Fuzz: whatever a name holds, rich shows :func:`visible` of it, never a style or a crash."""
    assert _render(markup(text)).rstrip("\n") == _render(term(text)).rstrip("\n")
    shown = _render(term(text))
    _no_raw_controls(shown)


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_md_cannot_open_a_tag_link_or_code(text: str) -> None:
    escaped = md(text)
    assert not set(escaped) & set("<[]`*~")
    _no_raw_controls(escaped)
