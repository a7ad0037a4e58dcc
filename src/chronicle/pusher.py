"""The daemon's pushes: after each seal, to every remote, on a thread of their own.

An ingest never waits on the network: the daemon only pokes this thread after
a seal. While a remote cannot be reached, pushes back off (1 s, doubling, at
most 5 minutes between tries) and the daemon goes on recording locally. A push
refused because it would send secrets neither redacted nor allowed waits for
the next seal (the user decides; retrying sooner changes nothing). What each
push did, or why it failed, is kept in ``data/remotes/<name>/pushed.json``
(``remote.push_state``), where ``chronicle status`` reads the push lag.
"""

from __future__ import annotations

import logging
import threading

from chronicle.errors import ChronicleError
from chronicle.workspace import Workspace


class Pusher:
    def __init__(self, ws: Workspace, logger: logging.Logger, *, first_delay: float = 1.0, max_delay: float = 300.0):
        self.ws = ws
        self.logger = logger
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chronicle-push", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.poke()  # what was sealed before the daemon started

    def poke(self) -> None:
        """A seal landed: push when the thread is free (a backoff in progress is cut short)."""
        self._wake.set()

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _backoff(self, delay: float | None) -> float:
        """The wait before the next try after one more failure (``delay``: the last wait, if any)."""
        return self.first_delay if delay is None else min(delay * 2, self.max_delay)

    def _run(self) -> None:
        from chronicle.remote import SecretsPending, push, record_push, remotes

        delay: float | None = None  # None: wait for a poke; else the backoff before the next try
        log = self.ws.open_log()  # its own handle: the daemon's thread keeps appending through its own
        try:
            while not self._stop.is_set():
                self._wake.wait(delay)
                self._wake.clear()
                if self._stop.is_set():
                    break
                failed = False
                for name in sorted(remotes(self.ws.data)):
                    try:
                        done = push(log, self.ws.data, name)
                        if done.lines:
                            self.logger.info("pushed", extra={"fields": {"remote": name, "lines": done.lines,
                                                                          "files": done.files, "bytes": done.bytes}})
                    except SecretsPending as exc:
                        record_push(self.ws.data, name, error=str(exc))
                        self.logger.warning("push waits", extra={"fields": {"remote": name, "why": str(exc)}})
                    except ChronicleError as exc:  # unreachable, refused: try again later
                        failed = True
                        record_push(self.ws.data, name, error=str(exc))
                        self.logger.warning("push failed", extra={"fields": {"remote": name, "error": str(exc),
                                                                              "retry_in_s": self._backoff(delay)}})
                delay = self._backoff(delay) if failed else None
        finally:
            log.close()
