"""Webhook notices (Slack-compatible ``{"text": ...}``), sent off the cycle's path.

:func:`decision_notices` says what changed between two decisions that an operator should hear
about (an agent gated or ungated, a weight moved more than a set amount); the watcher adds
cycle failures, overrides added or expired and a stale ledger. :class:`Alerter` sends them from
its own thread: :meth:`Alerter.notify` only puts the notice on a bounded queue and returns, so
a slow or dead webhook can never block or fail a cycle. Each notice is retried with backoff;
at most ``per_minute`` are sent in any minute, the others are dropped and counted, and the
next one sent says how many were dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Alerter", "Notice", "decision_notices"]

log = logging.getLogger("meta_supervisor.service")


@dataclass(frozen=True)
class Notice:
    """One thing to tell the operator: a kind (``cycle_failed``, ``gated`` ...) and a text."""

    kind: str
    text: str


def _first_failed_gate(explanation: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((g for g in explanation.get("gates", []) if not g.get("passed")), None)


def decision_notices(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], weight_move: float
) -> list[Notice]:
    """Agents gated or ungated from ``old`` to ``new``, and weights that moved more than
    ``weight_move`` (a fraction of capital); nothing for a first decision."""
    if old is None:
        return []
    notices = []
    old_agents, new_agents = old.get("agents", {}), new.get("agents", {})
    for name in sorted(new_agents):
        before, after = old_agents.get(name), new_agents[name]
        gate_now = _first_failed_gate(after)
        gate_then = _first_failed_gate(before) if before is not None else None
        if gate_now is not None and gate_then is None:
            notices.append(
                Notice(
                    "gated",
                    f"{name} gated by {gate_now['gate']} at {new['as_of']}: {gate_now['detail']}",
                )
            )
        elif gate_now is None and gate_then is not None:
            notices.append(Notice("ungated", f"{name} passes every gate again at {new['as_of']}"))
        old_w = float(before.get("weight", 0.0)) if before is not None else 0.0
        new_w = float(after.get("weight", 0.0))
        if abs(new_w - old_w) > weight_move:
            notices.append(
                Notice(
                    "weight_move",
                    f"{name} weight {old_w:.2%} -> {new_w:.2%} at {new['as_of']}: "
                    f"{after.get('summary', '')}",
                )
            )
    return notices


Post = Callable[[str, bytes], None]


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


class Alerter:
    """Sends notices to one webhook from a background thread (see the module docstring)."""

    def __init__(
        self,
        url: str | None,
        *,
        per_minute: int = 20,
        retry_delays_s: tuple[float, ...] = (1.0, 4.0, 15.0),
        queue_size: int = 256,
        count: Callable[[str], None] | None = None,
        post: Post = _post,
    ) -> None:
        self.url = url
        self.per_minute = per_minute
        self.retry_delays_s = retry_delays_s
        self._queue: queue.Queue[Notice | None] = queue.Queue(queue_size)
        self._count = count or (lambda _outcome: None)
        self._post = post
        self._sent: deque[float] = deque()
        self._dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the sending thread (nothing is sent without a URL)."""
        if self.url and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the notice being sent (queued ones are dropped)."""
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=10)

    def notify(self, notice: Notice) -> None:
        """Queue ``notice``; never blocks (a full queue drops it, counted)."""
        log.warning("alert %s: %s", notice.kind, notice.text)
        if not self.url:
            return
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            self._dropped += 1
            self._count("dropped")

    def _allowed(self) -> bool:
        now = time.monotonic()
        while self._sent and now - self._sent[0] > 60:
            self._sent.popleft()
        return len(self._sent) < self.per_minute

    def _run(self) -> None:
        while not self._stop.is_set():
            notice = self._queue.get()
            if notice is None:
                break
            if not self._allowed():
                self._dropped += 1
                self._count("dropped")
                continue
            text = f"[meta-supervisor] {notice.text}"
            if self._dropped:
                text += f" ({self._dropped} earlier notices dropped by the rate limit)"
                self._dropped = 0
            self._send(json.dumps({"text": text}).encode())

    def _send(self, body: bytes) -> None:
        for attempt, delay in enumerate((0.0, *self.retry_delays_s)):
            if delay and self._stop.wait(delay):
                return
            try:
                self._post(self.url or "", body)
            except (OSError, urllib.error.URLError) as err:
                log.warning("alert webhook attempt %d failed: %s", attempt + 1, err)
                continue
            self._sent.append(time.monotonic())
            self._count("sent")
            return
        self._count("failed")
