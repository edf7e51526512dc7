"""An on-disk store of activations, so that a layer's activations over an image set are computed once.

Layout under the store's folder::

    index.sqlite3        entries (key, shape, metadata, size, last use), file digests, small records
    arrays/KEY.f32       one entry: raw little-endian float32 rows, one row per image

A key is chosen by the caller (``priorviz.examples`` hashes the model's weights, the layer, the
input size and the content of every member of the set), so that any change to these is a
different key and a stale entry is never read. Files are identified by their SHA-256; a file whose
size, mtime, ctime and inode are what they were when it was last hashed is not read again, so a
query over an unchanged folder costs one ``stat`` per file. An entry is written to a temporary
file and renamed into place, and SQLite holds the index, so concurrent writers (threads or
processes) and a crash leave no half-written entry. Reading memory-maps the array: a query reads
only the pages it needs.

The arrays are bounded by ``max_bytes``: after each write the least recently used entries are
removed until the rest fit; the entry just written is always kept, even alone over the bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priorviz.errors import StoreUnusableError

DEFAULT_MAX_BYTES = 2 * 2**30
DTYPE = np.dtype("<f4")
ABANDONED_SECONDS = 86_400
"""A temporary array file untouched this long was left by a writer that died; it is removed."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, shape TEXT NOT NULL, meta TEXT NOT NULL, bytes INTEGER NOT NULL, last_used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, sha256 TEXT
);
CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def default_store_dir() -> Path:
    """``$XDG_CACHE_HOME/priorviz/activations``, else ``~/.cache/priorviz/activations``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "priorviz" / "activations"


@dataclass(frozen=True)
class StoredArray:
    """One entry: its rows, memory-mapped copy-on-write (writable in memory, never on disk), and its metadata."""

    array: np.ndarray
    meta: Mapping[str, Any]


@dataclass
class ArrayWriter:
    """Rows appended to a new entry while it is computed; ``meta`` is saved with it."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    row_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self._file = self.path.open("wb")

    def append(self, rows: np.ndarray) -> None:
        """Rows of one shape, the first axis counting them."""
        if self.row_shape is None:
            self.row_shape = tuple(rows.shape[1:])
        elif tuple(rows.shape[1:]) != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} after rows of shape {self.row_shape}")
        self._file.write(np.ascontiguousarray(rows, dtype=DTYPE).tobytes())
        self.rows += rows.shape[0]

    def close(self) -> None:
        self._file.close()


class ActivationStore:
    """Arrays of activations on disk under ``root``, at most ``max_bytes`` of them, kept across restarts."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.writes = 0
        """Entries this object wrote (how often activations had to be computed)."""
        self._ready = False
        self._lock = threading.Lock()

    # -- the index -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction; the folder and the schema are made on first use."""
        with self._lock:
            if not self._ready:
                try:
                    self._create()
                except (OSError, sqlite3.Error) as error:
                    raise StoreUnusableError(
                        f"the activation store at {self.root} cannot be used ({error}); give the server a writable "
                        "--store-dir"
                    ) from error
                self._ready = True
        with contextlib.closing(sqlite3.connect(self.root / "index.sqlite3", timeout=30)) as connection, connection:
            yield connection

    def _create(self) -> None:
        """The folders and the schema, and the leftovers of writers that died removed."""
        arrays = self.root / "arrays"
        arrays.mkdir(parents=True, exist_ok=True)
        for leftover in arrays.glob("*.tmp"):  # a writer that died; a live one writes for minutes, not a day
            with contextlib.suppress(OSError):
                if time.time() - leftover.stat().st_mtime > ABANDONED_SECONDS:
                    leftover.unlink()
        with contextlib.closing(sqlite3.connect(self.root / "index.sqlite3", timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    # -- file digests ----------------------------------------------------------------------

    def file_digests(self, files: Mapping[str, Path]) -> dict[str, str]:
        """The SHA-256 of each file's bytes, by name; only files changed since they were last hashed are read.

        A file that has gone (or cannot be read) since it was listed is left out.
        """
        stats, keys = {}, {}
        for name, path in files.items():
            with contextlib.suppress(OSError):
                stats[name], keys[name] = path.stat(), str(path.resolve())
        with self._index() as index:
            known = {
                row[0]: row[1:]
                for row in index.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, sha256 FROM file_digests WHERE path IN "
                    "(SELECT value FROM json_each(?))",
                    (json.dumps(list(keys.values())),),
                )
            }
        digests: dict[str, str] = {}
        fresh = []
        for name, stat in stats.items():
            signature = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
            row = known.get(keys[name])
            if row is not None and tuple(row[:4]) == signature:
                digests[name] = row[4]
                continue
            try:
                with files[name].open("rb") as file:
                    digests[name] = hashlib.file_digest(file, "sha256").hexdigest()
            except OSError:
                continue
            fresh.append((keys[name], *signature, digests[name]))
        if fresh:
            with self._index() as index:
                index.executemany("INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?, ?, ?)", fresh)
        return digests

    # -- entries ---------------------------------------------------------------------------

    def _array_path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"store keys are alphanumeric, got {key!r}")
        return self.root / "arrays" / f"{key}.f32"

    def load(self, key: str) -> StoredArray | None:
        """The entry under ``key``, or None; its last use becomes now."""
        path = self._array_path(key)
        with self._index() as index:
            row = index.execute("SELECT shape, meta FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            index.execute("UPDATE entries SET last_used = ? WHERE key = ?", (time.time(), key))
        shape = tuple(json.loads(row[0]))
        try:
            array = np.memmap(path, dtype=DTYPE, mode="c", shape=shape)
        except (OSError, ValueError):  # removed or cut short behind the index's back: as if never stored
            with self._index() as index:
                index.execute("DELETE FROM entries WHERE key = ?", (key,))
            return None
        return StoredArray(array, json.loads(row[1]))

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[ArrayWriter]:
        """A writer for a new entry under ``key``, stored when the block ends without error, discarded otherwise."""
        final = self._array_path(key)
        with self._index():
            pass  # the folders exist from here on
        writer = ArrayWriter(final.with_name(f"{key}.{uuid.uuid4().hex}.tmp"))
        try:
            yield writer
            writer.close()
            if writer.row_shape is None:
                raise ValueError("an entry needs at least one row")
            os.replace(writer.path, final)
        except BaseException:
            writer.close()
            writer.path.unlink(missing_ok=True)
            raise
        shape = [writer.rows, *writer.row_shape]
        size = final.stat().st_size
        with self._index() as index:
            index.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                (key, json.dumps(shape), json.dumps(writer.meta), size, time.time()),
            )
        with self._lock:
            self.writes += 1
        self._evict(keep=key)

    def _evict(self, keep: str) -> None:
        """Remove the least recently used entries until the others fit in ``max_bytes`` (``keep`` stays)."""
        with self._index() as index:
            rows = index.execute("SELECT key, bytes FROM entries ORDER BY last_used DESC").fetchall()
            total = sum(size for _, size in rows)
            doomed = []
            for key, size in reversed(rows):
                if total <= self.max_bytes:
                    break
                if key != keep:
                    doomed.append(key)
                    total -= size
            index.executemany("DELETE FROM entries WHERE key = ?", [(key,) for key in doomed])
        for key in doomed:
            self._array_path(key).unlink(missing_ok=True)

    def total_bytes(self) -> int:
        """Bytes of the stored arrays."""
        with self._index() as index:
            return int(index.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0])

    # -- small records ---------------------------------------------------------------------

    def record(self, key: str) -> Any | None:
        """A small JSON value kept under ``key`` (e.g. a layer's receptive field), or None."""
        with self._index() as index:
            row = index.execute("SELECT value FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def keep_record(self, key: str, value: Any) -> None:
        with self._index() as index:
            index.execute("INSERT OR REPLACE INTO records VALUES (?, ?)", (key, json.dumps(value)))
