"""The durable store-and-forward outbox of counts messages (SQLite in WAL mode).

Every counts message is written here, in one transaction with the allocation of its per-camera ``seq``,
before it is published; it is removed only when the broker has acknowledged it. A crash, a ``SIGKILL`` or
a power cut therefore loses nothing that was produced: the next run delivers every pending message, in
the order it was produced (row ids only grow), and its ``seq`` numbers continue where they stopped.

The outbox is bounded by bytes and by age. Beyond either bound the oldest messages are dropped; each
drop is counted and recorded as a range of ``seq`` per camera, so what was lost is known exactly.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from roadside.core.errors import RoadsideError
from roadside.core.ratelog import RateLimitedLog

log = logging.getLogger("roadside.edge.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (camera TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dropped (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class OutboxError(RoadsideError):
    """The outbox database cannot be opened or written (disk full, permissions, corrupt file)."""


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    camera: str
    seq: int
    topic: str
    payload: bytes
    created: float  # epoch seconds when it was produced


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    oldest_age_s: float | None
    dropped: dict[str, int]  # camera -> messages dropped because of the bounds (all time)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Outbox:
    def __init__(self, path: str | Path, max_bytes: int = 64 * 1024 * 1024, max_age_s: float = 30 * 24 * 3600.0,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        #: ids of the messages published and not yet acknowledged (set by the MQTT link): the bounds never drop
        #: them, since they may still be delivered; a drop is what is really lost
        self.in_flight: Callable[[], frozenset[int]] = frozenset
        self._log = RateLimitedLog(log)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before add() returns (survives a power cut, not just a crash)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()
        except sqlite3.Error as e:
            raise OutboxError(f"{self.path}: cannot open the outbox database: {e}") from None
        except OSError as e:
            raise OutboxError(f"{self.path}: cannot create the outbox folder: {e}") from None
        self._depth, self._bytes = int(row[0]), int(row[1])

    # -- writing -------------------------------------------------------------------------------------
    def add(self, camera: str, topic: str, make_payload: Callable[[int], bytes]) -> int:
        """Allocate the camera's next ``seq``, store ``make_payload(seq)`` and return the seq.

        Both happen in one durable transaction: a seq is used by exactly one stored message.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute("SELECT next_seq FROM sequences WHERE camera = ?", (camera,)).fetchone()
                    seq = int(row[0]) if row else 0
                    payload = make_payload(seq)
                    self._db.execute("INSERT INTO messages (camera, seq, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
                                     (camera, seq, topic, payload, self._clock()))
                    self._db.execute("INSERT INTO sequences (camera, next_seq) VALUES (?, ?) "
                                     "ON CONFLICT(camera) DO UPDATE SET next_seq = excluded.next_seq", (camera, seq + 1))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise OutboxError(f"{self.path}: cannot store a counts message of camera {camera!r}: {e}") from None
            self._depth += 1
            self._bytes += len(payload)
            self._enforce_bounds()
            return seq

    def _drop_where(self, where: str, args: tuple, reason: str) -> int:
        """Delete the messages matching ``where`` (oldest first, none in flight), record them as dropped and
        log it."""
        flying = self.in_flight()
        rows = [r for r in self._db.execute(f"SELECT id, camera, seq, LENGTH(payload) FROM messages WHERE {where} "
                                            "ORDER BY id", args).fetchall() if r[0] not in flying]
        if not rows:
            return 0
        now = self._clock()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for rid, camera, seq, size in rows:
                self._db.execute("DELETE FROM messages WHERE id = ?", (rid,))
                last = self._db.execute("SELECT id, last_seq FROM dropped WHERE camera = ? AND reason = ? ORDER BY id DESC LIMIT 1",
                                        (camera, reason)).fetchone()
                if last is not None and last[1] == seq - 1:
                    self._db.execute("UPDATE dropped SET last_seq = ?, at = ? WHERE id = ?", (seq, now, last[0]))
                else:
                    self._db.execute("INSERT INTO dropped (camera, first_seq, last_seq, reason, at) VALUES (?, ?, ?, ?, ?)",
                                     (camera, seq, seq, reason, now))
                self._depth -= 1
                self._bytes -= int(size)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        seqs: dict[str, list[int]] = {}
        for _, camera, seq, _ in rows:
            seqs.setdefault(camera, []).append(seq)
        self._log.warning(f"drop:{reason}", "outbox: dropped %d counts message(s) beyond outbox.%s (%s): %s",
                          len(rows), reason, "oldest first" if reason == "max_bytes" else "too old",
                          ", ".join(f"camera {c} seq {min(v)}-{max(v)}" for c, v in seqs.items()))
        return len(rows)

    def _enforce_bounds(self) -> int:
        dropped = self._drop_where("created < ?", (self._clock() - self.max_age_s,), "max_age")
        if self._bytes > self.max_bytes:
            # oldest first, until the rest fits
            excess = self._bytes - self.max_bytes
            ids, total = [], 0
            flying = self.in_flight()
            for rid, size in self._db.execute("SELECT id, LENGTH(payload) FROM messages ORDER BY id"):
                if total >= excess:
                    break
                if rid in flying:
                    continue
                ids.append(rid)
                total += int(size)
            if ids:
                dropped += self._drop_where("id <= ?", (ids[-1],), "max_bytes")
        return dropped

    def prune(self) -> int:
        """Apply the age bound now (it is also applied on every add); returns the messages dropped."""
        with self._lock:
            try:
                return self._enforce_bounds()
            except sqlite3.Error as e:
                raise OutboxError(f"{self.path}: cannot prune the outbox: {e}") from None

    def ack(self, ids: Iterable[int]) -> int:
        """The broker acknowledged these messages: remove them (unknown ids are ignored)."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                for rid in ids:
                    row = self._db.execute("DELETE FROM messages WHERE id = ? RETURNING LENGTH(payload)", (rid,)).fetchone()
                    if row is not None:
                        removed += 1
                        self._depth -= 1
                        self._bytes -= int(row[0])
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._db.execute("ROLLBACK")
                raise OutboxError(f"{self.path}: cannot remove acknowledged messages: {e}") from None
            return removed

    # -- reading -------------------------------------------------------------------------------------
    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Stored messages with ``id > after_id``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, camera, seq, topic, payload, created FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                                    (after_id, limit)).fetchall()
        return [OutboxMessage(int(r[0]), r[1], int(r[2]), r[3], bytes(r[4]), float(r[5])) for r in rows]

    def next_seq(self, camera: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT next_seq FROM sequences WHERE camera = ?", (camera,)).fetchone()
        return int(row[0]) if row else 0

    def dropped_ranges(self, camera: str | None = None) -> list[dict]:
        """Every recorded drop: ``{"camera", "first_seq", "last_seq", "reason", "at"}``, oldest first."""
        q = "SELECT camera, first_seq, last_seq, reason, at FROM dropped"
        args: tuple = ()
        if camera is not None:
            q += " WHERE camera = ?"
            args = (camera,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY id", args).fetchall()
        return [{"camera": r[0], "first_seq": r[1], "last_seq": r[2], "reason": r[3], "at": r[4]} for r in rows]

    def stats(self) -> OutboxStats:
        with self._lock:
            oldest = self._db.execute("SELECT MIN(created) FROM messages").fetchone()[0]
            dropped = dict(self._db.execute("SELECT camera, SUM(last_seq - first_seq + 1) FROM dropped GROUP BY camera").fetchall())
        age = None if oldest is None else max(0.0, self._clock() - float(oldest))
        return OutboxStats(self._depth, self._bytes, age, {k: int(v) for k, v in dropped.items()})

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass


class OutboxPruner:
    """Applies the outbox's age bound every ``every_s`` seconds, so that old messages go even when no new
    message arrives (the bounds are also applied on every add)."""

    def __init__(self, outbox: Outbox, every_s: float = 60.0):
        self.outbox = outbox
        self.every_s = every_s
        self._last = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self._last <= self.every_s:
            return
        self._last = time.monotonic()
        try:
            self.outbox.prune()  # each drop is logged by the outbox
        except RoadsideError as e:
            log.error("%s", e)
