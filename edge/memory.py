"""The robot's memory: every taught pair (spoken word + object crop) in one SQLite file.

One file per robot (``<state_dir>/<db_name>``), written through the stdlib ``sqlite3`` module in
WAL mode with ``synchronous=FULL``: :meth:`Memory.teach` returns only after its transaction is in
the fsynced write-ahead log, so an acknowledged pair survives ``kill -9`` and power loss.

Per pair the file holds the raw audio as wav bytes, the crop as png bytes (both lossless, so what
comes back is bit-exact), a SHA-256 of each (SQLite checks its b-trees, not the bytes in them),
an optional label, the creation time, and any number of embeddings, each tagged with the id of
the encoder that made it and stored as a float32 array of any shape (a DTW "embedding" is a
(T, 39) feature matrix). Since schema version 2 a pair may have more views of its object: the
pair's own crop is its first view; ``views`` holds the others, each a png with its checksum, its
source (``taught``: kept while the pair was taught; ``learned``: a confirmed answer's crop) and
its own embeddings (``view_embeddings``). A file of an older schema is upgraded in place, in one
transaction, when it is opened: rows are only added, never rewritten, and a failed upgrade is
rolled back, leaving the file as it was.

Our files carry ``PRAGMA application_id`` = :data:`APPLICATION_ID` and ``user_version`` = the
schema version. A file that is not ours (another program's SQLite file, random bytes, an empty
file) or is damaged (truncated, malformed) raises :class:`MemoryFileError` naming the path, and is
never written to: nothing is executed on it but reads until it has been recognised. A new file is
built beside its final name and linked into place only when complete, so a crash during creation
never leaves a half-made memory behind.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.io import wavfile

from edge.audio import AudioError, decode_audio
from edge.fileio import write_atomic
from edge.settings import SettingsError, setting

log = logging.getLogger(__name__)

APPLICATION_ID = 0x53485359  # "SHSY": marks a SQLite file as a showsay memory
SCHEMA_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"
EXPORT_FORMAT = "showsay-memory-export"
EXPORT_VERSION = 2
IMPORTABLE_EXPORT_VERSIONS = (1, 2)  # version 1: one crop per pair
VIEW_SOURCES = ("taught", "learned")
INDEX_NAME = "index.json"
MAX_LABEL_CHARS = 200  # longest label stored (after stripping spaces)

# Schema by version: entry N upgrades a file from version N-1 to N (entry 1 creates the tables).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE pairs (
            pair_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused after forget
            label TEXT,
            created_unix REAL NOT NULL,
            sample_rate_hz INTEGER NOT NULL CHECK (sample_rate_hz > 0),
            audio_wav BLOB NOT NULL,
            audio_sha256 TEXT NOT NULL,
            crop_png BLOB NOT NULL,
            crop_sha256 TEXT NOT NULL
        )""",
        """CREATE TABLE embeddings (
            pair_id INTEGER NOT NULL REFERENCES pairs(pair_id) ON DELETE CASCADE,
            encoder_id TEXT NOT NULL,
            shape TEXT NOT NULL,  -- JSON list of ints
            data BLOB NOT NULL,   -- float32, little-endian, C order
            PRIMARY KEY (pair_id, encoder_id)
        )""",
        "CREATE INDEX embeddings_by_encoder ON embeddings(encoder_id)",
    ),
    2: (  # more views of a pair's object (the pair's own crop stays its first view)
        """CREATE TABLE views (
            view_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
            pair_id INTEGER NOT NULL REFERENCES pairs(pair_id) ON DELETE CASCADE,
            source TEXT NOT NULL CHECK (source IN ('taught', 'learned')),
            created_unix REAL NOT NULL,
            crop_png BLOB NOT NULL,
            crop_sha256 TEXT NOT NULL
        )""",
        "CREATE INDEX views_by_pair ON views(pair_id)",
        """CREATE TABLE view_embeddings (
            view_id INTEGER NOT NULL REFERENCES views(view_id) ON DELETE CASCADE,
            encoder_id TEXT NOT NULL,
            shape TEXT NOT NULL,  -- JSON list of ints
            data BLOB NOT NULL,   -- float32, little-endian, C order
            PRIMARY KEY (view_id, encoder_id)
        )""",
    ),
}
EXPECTED_COLUMNS = {  # table -> (schema version that made it, columns)
    "pairs": (1, {"pair_id", "label", "created_unix", "sample_rate_hz", "audio_wav", "audio_sha256", "crop_png", "crop_sha256"}),
    "embeddings": (1, {"pair_id", "encoder_id", "shape", "data"}),
    "views": (2, {"view_id", "pair_id", "source", "created_unix", "crop_png", "crop_sha256"}),
    "view_embeddings": (2, {"view_id", "encoder_id", "shape", "data"}),
}


@dataclass(frozen=True)
class MemorySettings:
    """Where the taught pairs are kept."""

    state_dir: str = setting("/var/lib/showsay", "directory of the memory file (created if missing); relative paths are taken from the config file's directory")
    db_name: str = setting("memory.sqlite3", "file name of the SQLite memory inside state_dir")
    busy_timeout_ms: int = setting(5000, "how long a write waits for another process holding the file (the memory CLI), milliseconds", min=0, max=600000)
    check_on_open: bool = setting(True, "run PRAGMA quick_check when the file is opened, so damage is reported at start-up, not mid-run")

    def validate(self) -> None:
        """The memory file is a plain name inside state_dir."""
        if not self.db_name or self.db_name in (".", "..") or "/" in self.db_name:
            raise SettingsError(f"db_name: must be a file name inside state_dir (no '/'), got {self.db_name!r}")

    @property
    def path(self) -> Path:
        """Full path of the memory file."""
        return Path(self.state_dir).expanduser() / self.db_name


class MemoryError_(Exception):
    """Something about the memory went wrong (base of the errors below)."""


class MemoryFileError(MemoryError_):
    """The file is not a showsay memory, is damaged, or cannot be opened; it has not been modified."""


class MemoryInputError(MemoryError_, ValueError):
    """A pair, label, embedding or export directory given to the memory is unusable."""


@dataclass(frozen=True)
class StoredView:
    """One more view of a pair's object, beyond the pair's own crop."""

    view_id: int
    pair_id: int
    source: str  # "taught" (kept while teaching) or "learned" (a confirmed answer's crop)
    created_unix: float
    crop: np.ndarray = field(repr=False)  # uint8 (H, W, 3) RGB, or (H, W) grey


@dataclass(frozen=True)
class TaughtPair:
    """One taught word: what was heard and what was seen."""

    pair_id: int
    label: str | None
    created_unix: float
    audio_pcm: np.ndarray = field(repr=False)  # int16 (samples,)
    sample_rate_hz: int
    crop: np.ndarray = field(repr=False)  # uint8 (H, W, 3) RGB, or (H, W) grey: the first view
    views: tuple[StoredView, ...] = field(default=(), repr=False)  # the other views, oldest first

    @property
    def crops(self) -> list[np.ndarray]:
        """Every view's crop, the pair's own first."""
        return [self.crop, *(v.crop for v in self.views)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no audio or pixels): what ``list`` prints."""
        return {
            "pair_id": self.pair_id,
            "label": self.label,
            "created_unix": round(self.created_unix, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_unix)),
            "audio_ms": round(1000.0 * len(self.audio_pcm) / self.sample_rate_hz, 1),
            "crop_shape": list(self.crop.shape),
            "views": 1 + len(self.views),
            "learned_views": sum(v.source == "learned" for v in self.views),
        }


# ---------------------------------------------------------------------------- encodings


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_audio(audio_pcm: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    pcm = np.asarray(audio_pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise MemoryInputError(f"audio: expected int16 samples of shape (n,), got {pcm.dtype} {pcm.shape}")
    if pcm.size == 0:
        raise MemoryInputError("audio: no samples")
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, (int, np.integer)) or not 1000 <= sample_rate_hz <= 384000:
        raise MemoryInputError(f"audio: sample rate must be an integer between 1000 and 384000 Hz, got {sample_rate_hz!r}")
    return pcm


def _check_crop(crop: np.ndarray) -> np.ndarray:
    img = np.asarray(crop)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise MemoryInputError(f"crop: expected uint8 RGB (H, W, 3) or grey (H, W), got {img.dtype} {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise MemoryInputError(f"crop: empty image {img.shape}")
    return img


def _check_label(label: str | None) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str):
        raise MemoryInputError(f"label: expected text, got {label!r}")
    label = label.strip()
    if len(label) > MAX_LABEL_CHARS:
        raise MemoryInputError(f"label: at most {MAX_LABEL_CHARS} characters, got {len(label)}")
    return label or None


def _check_embedding(encoder_id: str, vector: np.ndarray) -> np.ndarray:
    if not isinstance(encoder_id, str) or not encoder_id:
        raise MemoryInputError(f"embedding: encoder id must be non-empty text, got {encoder_id!r}")
    arr = np.asarray(vector)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MemoryInputError(f"embedding {encoder_id!r}: expected numbers, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype="<f4")
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise MemoryInputError(f"embedding {encoder_id!r}: must be non-empty and finite, got shape {arr.shape}")
    return arr


def encode_wav(pcm: np.ndarray, sample_rate_hz: int) -> bytes:
    """Mono 16-bit wav file bytes."""
    buf = io.BytesIO()
    wavfile.write(buf, int(sample_rate_hz), pcm)
    return buf.getvalue()


def decode_wav(data: bytes, source: str) -> tuple[np.ndarray, int]:
    """(int16 samples, rate) of wav bytes written by :func:`encode_wav`."""
    try:
        rate, pcm = decode_audio(data, source)  # the one audio reader: a damaged body is one line, not a decoder's traceback
    except AudioError as exc:
        raise MemoryInputError(str(exc)) from None
    pcm = pcm[:, 0].copy() if pcm.ndim == 2 and pcm.shape[1] == 1 else pcm
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise MemoryInputError(f"{source}: expected mono 16-bit wav, got {pcm.dtype} {pcm.shape}")
    return pcm, int(rate)


def encode_png(img: np.ndarray) -> bytes:
    """Lossless png bytes of an RGB or grey uint8 image."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise MemoryInputError(f"crop: png encoding failed for shape {img.shape}")
    return buf.tobytes()


def decode_png(data: bytes, source: str) -> np.ndarray:
    """RGB (H, W, 3) or grey (H, W) uint8 image of png bytes."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise MemoryInputError(f"{source}: not a readable 8-bit RGB or grey png")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def _decode_embedding(shape_json: str, data: bytes, source: str) -> np.ndarray:
    try:
        shape = tuple(int(n) for n in json.loads(shape_json))
    except (ValueError, TypeError) as exc:
        raise MemoryInputError(f"{source}: bad embedding shape {shape_json!r} ({exc})") from None
    if int(np.prod(shape)) * 4 != len(data):
        raise MemoryInputError(f"{source}: embedding of shape {shape} needs {int(np.prod(shape)) * 4} bytes, has {len(data)}")
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- recognising a file


def read_header(path: Path) -> tuple[int, int]:
    """(user_version, application_id) from a SQLite file's header, read as plain bytes.

    Raises MemoryFileError for anything that is not a SQLite database; SQLite never sees such a file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)  # a FIFO here must not hang the opener
    except OSError as exc:
        raise MemoryFileError(f"{path}: cannot read the memory file ({exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MemoryFileError(f"{path}: not a regular file (a FIFO, device or directory), not a showsay memory; it was left untouched")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            head = f.read(100)
    except OSError as exc:
        raise MemoryFileError(f"{path}: cannot read the memory file ({exc})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(head) == 0:
        raise MemoryFileError(f"{path}: empty file, not a showsay memory; move it away to start a new memory")
    if not head.startswith(SQLITE_MAGIC) or len(head) < 100:
        raise MemoryFileError(f"{path}: not a SQLite database (corrupt or another program's file); it was left untouched")
    return int.from_bytes(head[60:64], "big", signed=True), int.from_bytes(head[68:72], "big", signed=True)


def _foreign_tables(path: Path) -> str | None:
    """Table names of another program's SQLite file, for the error message (read with immutable=1)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return ", ".join(names[:8]) or "none"


# ---------------------------------------------------------------------------- the store


class Memory:
    """All taught pairs of one robot, in one SQLite file; safe to share between threads."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        create: bool = True,
        busy_timeout_ms: int = 5000,
        check_on_open: bool = True,
    ) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if not self.path.exists():
            if not create:
                raise MemoryFileError(f"{self.path}: no memory file here (nothing taught yet, or a wrong state_dir)")
            try:
                self._create_file()
            except (OSError, sqlite3.Error) as exc:  # a full disk, a read-only or unwritable state_dir
                raise MemoryFileError(f"{self.path}: cannot create the memory file in memory.state_dir {self.path.parent} ({exc})") from None
        self._con = self._open(busy_timeout_ms, check_on_open)

    @classmethod
    def from_settings(cls, settings: MemorySettings, *, create: bool = True) -> "Memory":
        """Open (or create) the memory file the settings name."""
        return cls(settings.path, create=create, busy_timeout_ms=settings.busy_timeout_ms, check_on_open=settings.check_on_open)

    # -- opening

    def _create_file(self) -> None:
        """Build a new empty memory under a temporary name, then link it into place (never replacing a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".new")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode=DELETE")
                con.execute("PRAGMA synchronous=FULL")
                con.execute("BEGIN IMMEDIATE")
                con.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._migrate(con, 0)
                con.execute("COMMIT")
                con.execute("PRAGMA journal_mode=WAL")  # recorded in the header, so every opener uses WAL
            finally:
                con.close()
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)  # fails if someone created the file meanwhile: never replace it
            except FileExistsError:
                log.info("%s: created by another process meanwhile; using that one", self.path)
            _fsync_dir(self.path.parent)
            log.info("%s: new memory created (schema version %d)", self.path, SCHEMA_VERSION)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}-journal").unlink(missing_ok=True)

    def _open(self, busy_timeout_ms: int, check_on_open: bool) -> sqlite3.Connection:
        _, app_id = read_header(self.path)
        if app_id != APPLICATION_ID:
            tables = _foreign_tables(self.path)
            what = "a damaged SQLite file" if tables is None else f"a SQLite file of another program (tables: {tables})"
            raise MemoryFileError(f"{self.path}: {what}, not a showsay memory (application_id {app_id:#x}); it was left untouched")
        for where in (self.path, self.path.parent):  # WAL needs to write beside the file too
            if not os.access(where, os.W_OK):
                raise MemoryFileError(f"{where}: no write permission (run as the daemon's user, or with sudo)")
        try:
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000.0)
        except sqlite3.Error as exc:
            raise MemoryFileError(f"{self.path}: cannot open the memory ({exc})") from None
        try:
            con.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            # Reads only until the file is recognised as ours and whole.
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MemoryFileError(
                    f"{self.path}: written by a newer showsay (schema version {version}, this one knows up to "
                    f"{SCHEMA_VERSION}); upgrade showsay. The file was left untouched"
                )
            if check_on_open:
                problems = [r[0] for r in con.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise MemoryFileError(
                        f"{self.path}: the memory file is damaged ({'; '.join(problems)}); it was left untouched. "
                        "Restore it from an export (showsay memory import) or move it away to start afresh"
                    )
            if version >= 1:
                self._check_schema(con, version)
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            if version < SCHEMA_VERSION:
                con.execute("BEGIN IMMEDIATE")
                try:
                    self._migrate(con, version)
                    if version >= 1:
                        self._check_schema(con, SCHEMA_VERSION)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")  # nothing of the upgrade reaches the file
                    raise
                if version >= 1:
                    log.info("%s: schema upgraded in place from version %d to %d (every pair kept)", self.path, version, SCHEMA_VERSION)
        except sqlite3.OperationalError as exc:
            con.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise MemoryFileError(f"{self.path}: held by another process for longer than {busy_timeout_ms} ms ({exc})") from None
            raise MemoryFileError(f"{self.path}: cannot use the memory file ({exc}); it was left untouched") from None
        except sqlite3.DatabaseError as exc:
            con.close()
            raise MemoryFileError(
                f"{self.path}: the memory file is damaged or unreadable ({exc}); it was left untouched. "
                "Restore it from an export (showsay memory import) or move it away to start afresh"
            ) from None
        except BaseException:
            con.close()
            raise
        return con

    def _check_schema(self, con: sqlite3.Connection, version: int) -> None:
        for table, (since, expected) in EXPECTED_COLUMNS.items():
            if since > version:
                continue
            have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            if not expected <= have:
                raise MemoryFileError(
                    f"{self.path}: marked as a showsay memory but table {table!r} lacks columns "
                    f"{sorted(expected - have)}; it was left untouched"
                )

    @staticmethod
    def _migrate(con: sqlite3.Connection, from_version: int) -> None:
        """Apply every migration after ``from_version`` (the caller holds a write transaction)."""
        for version in range(from_version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute(f"PRAGMA user_version={version}")

    # -- writing

    def teach(
        self,
        audio_pcm: np.ndarray,
        sample_rate_hz: int,
        crop: np.ndarray,
        label: str | None = None,
        embeddings: Mapping[str, np.ndarray] | None = None,
        views: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]] = (),
    ) -> int:
        """Store one pair; returns its id once the transaction is durably committed.

        ``views``: more crops of the object taken while teaching, each with its embeddings; stored in
        the same transaction (source ``taught``), after the pair's own ``crop``.
        """
        pcm = _check_audio(audio_pcm, sample_rate_hz)
        img = _check_crop(crop)
        label = _check_label(label)
        embs = {k: _check_embedding(k, v) for k, v in (embeddings or {}).items()}
        extra = [(encode_png(_check_crop(c)), {k: _check_embedding(k, v) for k, v in (e or {}).items()}) for c, e in views]
        wav, png = encode_wav(pcm, int(sample_rate_hz)), encode_png(img)
        now = time.time()
        with self._transaction() as con:
            pair_id = self._insert(con, label, now, int(sample_rate_hz), wav, png, embs)
            for view_png, view_embs in extra:
                self._insert_view(con, pair_id, "taught", now, view_png, view_embs)
        log.debug("%s: pair %d stored (%d samples, crop %s, %d more views, embeddings %s)", self.path, pair_id, pcm.size, img.shape, len(extra), sorted(embs))
        return pair_id

    @staticmethod
    def _insert_view(con: sqlite3.Connection, pair_id: int, source: str, created_unix: float, png: bytes, embs: Mapping[str, np.ndarray]) -> int:
        cur = con.execute(
            "INSERT INTO views (pair_id, source, created_unix, crop_png, crop_sha256) VALUES (?, ?, ?, ?, ?)",
            (pair_id, source, created_unix, png, _sha256(png)),
        )
        view_id = int(cur.lastrowid)
        for encoder_id, arr in embs.items():
            con.execute(
                "INSERT INTO view_embeddings (view_id, encoder_id, shape, data) VALUES (?, ?, ?, ?)",
                (view_id, encoder_id, json.dumps(list(arr.shape)), arr.tobytes()),
            )
        return view_id

    def add_view(
        self,
        pair_id: int,
        crop: np.ndarray,
        embeddings: Mapping[str, np.ndarray] | None = None,
        *,
        source: str = "learned",
        max_learned: int | None = None,
        word_pair_ids: Sequence[int] | None = None,
    ) -> tuple[int, list[int]]:
        """Store one more view of pair ``pair_id``'s object; returns (its view id, the ids of views dropped to make room).

        With ``max_learned``, the learned views of the word (pairs ``word_pair_ids``, default this
        pair alone) are kept to at most that many, the oldest dropped first; taught views and the
        pairs' own crops are never dropped. One transaction: all of it is stored, or none.
        """
        if source not in VIEW_SOURCES:
            raise MemoryInputError(f"view source must be one of {', '.join(VIEW_SOURCES)}, got {source!r}")
        if max_learned is not None and max_learned < 1:
            raise MemoryInputError(f"max_learned must be >= 1, got {max_learned}")
        png = encode_png(_check_crop(crop))
        embs = {k: _check_embedding(k, v) for k, v in (embeddings or {}).items()}
        word = sorted({int(pair_id), *(int(p) for p in (word_pair_ids or ()))})
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM pairs WHERE pair_id=?", (int(pair_id),)).fetchone() is None:
                raise MemoryInputError(f"no pair {pair_id} in {self.path}")
            view_id = self._insert_view(con, int(pair_id), source, time.time(), png, embs)
            dropped: list[int] = []
            if max_learned is not None:
                marks = ",".join("?" * len(word))
                learned = [r[0] for r in con.execute(
                    f"SELECT view_id FROM views WHERE source='learned' AND pair_id IN ({marks}) ORDER BY created_unix DESC, view_id DESC", word
                )]
                dropped = sorted(learned[max_learned:])
                con.executemany("DELETE FROM views WHERE view_id=?", [(v,) for v in dropped])
        log.info("%s: pair %d has a new %s view %d%s", self.path, pair_id, source, view_id, f" (dropped {dropped})" if dropped else "")
        return view_id, dropped

    def forget_view(self, view_id: int) -> bool:
        """Delete one view (and its embeddings); False if there was no such view."""
        with self._transaction() as con:
            return con.execute("DELETE FROM views WHERE view_id=?", (int(view_id),)).rowcount > 0

    def set_view_embedding(self, view_id: int, encoder_id: str, vector: np.ndarray) -> None:
        """Store (or replace) the embedding ``encoder_id`` made of view ``view_id``."""
        arr = _check_embedding(encoder_id, vector)
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM views WHERE view_id=?", (int(view_id),)).fetchone() is None:
                raise MemoryInputError(f"no view {view_id} in {self.path}")
            con.execute(
                "INSERT OR REPLACE INTO view_embeddings (view_id, encoder_id, shape, data) VALUES (?, ?, ?, ?)",
                (int(view_id), encoder_id, json.dumps(list(arr.shape)), arr.tobytes()),
            )

    @staticmethod
    def _insert(
        con: sqlite3.Connection, label: str | None, created_unix: float, rate: int, wav: bytes, png: bytes, embs: Mapping[str, np.ndarray]
    ) -> int:
        cur = con.execute(
            "INSERT INTO pairs (label, created_unix, sample_rate_hz, audio_wav, audio_sha256, crop_png, crop_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (label, created_unix, rate, wav, _sha256(wav), png, _sha256(png)),
        )
        pair_id = int(cur.lastrowid)
        for encoder_id, arr in embs.items():
            con.execute(
                "INSERT INTO embeddings (pair_id, encoder_id, shape, data) VALUES (?, ?, ?, ?)",
                (pair_id, encoder_id, json.dumps(list(arr.shape)), arr.tobytes()),
            )
        return pair_id

    def set_embedding(self, pair_id: int, encoder_id: str, vector: np.ndarray) -> None:
        """Store (or replace) the embedding ``encoder_id`` made of pair ``pair_id``."""
        arr = _check_embedding(encoder_id, vector)
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM pairs WHERE pair_id=?", (int(pair_id),)).fetchone() is None:
                raise MemoryInputError(f"no pair {pair_id} in {self.path}")
            con.execute(
                "INSERT OR REPLACE INTO embeddings (pair_id, encoder_id, shape, data) VALUES (?, ?, ?, ?)",
                (int(pair_id), encoder_id, json.dumps(list(arr.shape)), arr.tobytes()),
            )

    def forget(self, pair_id: int) -> bool:
        """Delete a pair and its embeddings; False if there was no such pair."""
        with self._transaction() as con:
            gone = con.execute("DELETE FROM pairs WHERE pair_id=?", (int(pair_id),)).rowcount > 0
        if gone:
            log.info("%s: pair %d forgotten", self.path, pair_id)
        return gone

    def label(self, pair_id: int, text: str | None) -> None:
        """Set (or with None / empty text, clear) the label of a pair."""
        text = _check_label(text)
        with self._transaction() as con:
            if con.execute("UPDATE pairs SET label=? WHERE pair_id=?", (text, int(pair_id))).rowcount == 0:
                raise MemoryInputError(f"no pair {pair_id} in {self.path}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; committed (and, with synchronous=FULL, fsynced) when the block ends."""
        with self._lock:
            self._require_open()
            try:
                self._con.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise MemoryError_(f"{self.path}: cannot write ({exc})") from exc
            try:
                yield self._con
                self._con.execute("COMMIT")
            except BaseException as exc:
                if self._con.in_transaction:
                    try:
                        self._con.execute("ROLLBACK")
                    except sqlite3.Error as rollback_exc:
                        log.error("%s: rollback failed (%s)", self.path, rollback_exc)
                if isinstance(exc, sqlite3.Error):
                    raise MemoryError_(f"{self.path}: write failed, nothing was stored ({exc})") from exc
                raise

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._require_open()
            try:
                yield self._con
            except sqlite3.Error as exc:
                raise MemoryError_(f"{self.path}: read failed ({exc})") from exc

    def _require_open(self) -> None:
        if self._con is None:
            raise MemoryError_(f"{self.path}: the memory is closed")

    # -- reading

    def pairs(self) -> list[TaughtPair]:
        """Every stored pair, oldest first; a pair whose bytes are damaged is logged and left out."""
        with self._reading() as con:
            rows = con.execute(
                "SELECT pair_id, label, created_unix, sample_rate_hz, audio_wav, audio_sha256, crop_png, crop_sha256 "
                "FROM pairs ORDER BY pair_id"
            ).fetchall()
            view_rows = con.execute(
                "SELECT view_id, pair_id, source, created_unix, crop_png, crop_sha256 FROM views ORDER BY view_id"
            ).fetchall()
        views = self._decode_views(view_rows)
        out = []
        for row in rows:
            try:
                out.append(self._decode_pair(row, views.get(int(row[0]), ())))
            except MemoryInputError as exc:
                log.error("%s: %s; left out (run showsay memory check)", self.path, exc)
        return out

    def _decode_views(self, rows: list[tuple]) -> dict[int, tuple[StoredView, ...]]:
        """pair id -> its views, oldest first; a view whose bytes are damaged is logged and left out."""
        out: dict[int, list[StoredView]] = {}
        for row in rows:
            try:
                view = _decode_view(row)
            except MemoryInputError as exc:
                log.error("%s: %s; left out (run showsay memory check)", self.path, exc)
                continue
            out.setdefault(view.pair_id, []).append(view)
        return {k: tuple(v) for k, v in out.items()}

    def pair(self, pair_id: int) -> TaughtPair | None:
        """One pair, or None if there is no such pair."""
        with self._reading() as con:
            row = con.execute(
                "SELECT pair_id, label, created_unix, sample_rate_hz, audio_wav, audio_sha256, crop_png, crop_sha256 "
                "FROM pairs WHERE pair_id=?",
                (int(pair_id),),
            ).fetchone()
            view_rows = con.execute(
                "SELECT view_id, pair_id, source, created_unix, crop_png, crop_sha256 FROM views WHERE pair_id=? ORDER BY view_id", (int(pair_id),)
            ).fetchall()
        return None if row is None else self._decode_pair(row, self._decode_views(view_rows).get(int(pair_id), ()))

    @staticmethod
    def _decode_pair(row: tuple, views: tuple[StoredView, ...] = ()) -> TaughtPair:
        pair_id, label, created, rate, wav, wav_hash, png, png_hash = row
        if _sha256(wav) != wav_hash:
            raise MemoryInputError(f"pair {pair_id}: audio bytes do not match their checksum")
        if _sha256(png) != png_hash:
            raise MemoryInputError(f"pair {pair_id}: crop bytes do not match their checksum")
        pcm, wav_rate = decode_wav(wav, f"pair {pair_id} audio")
        if wav_rate != rate:
            raise MemoryInputError(f"pair {pair_id}: audio rate {wav_rate} Hz differs from the recorded {rate} Hz")
        return TaughtPair(pair_id, label, created, pcm, rate, decode_png(png, f"pair {pair_id} crop"), views)

    def embeddings(self, encoder_id: str) -> dict[int, np.ndarray]:
        """pair id -> float32 array, for every pair that has an embedding by ``encoder_id``."""
        with self._reading() as con:
            rows = con.execute(
                "SELECT pair_id, shape, data FROM embeddings WHERE encoder_id=? ORDER BY pair_id", (encoder_id,)
            ).fetchall()
        out = {}
        for pair_id, shape, data in rows:
            try:
                out[int(pair_id)] = _decode_embedding(shape, data, f"pair {pair_id} embedding {encoder_id!r}")
            except MemoryInputError as exc:
                log.error("%s: %s; left out", self.path, exc)
        return out

    def view_embeddings(self, encoder_id: str) -> dict[int, np.ndarray]:
        """view id -> float32 array, for every view that has an embedding by ``encoder_id``."""
        with self._reading() as con:
            rows = con.execute(
                "SELECT view_id, shape, data FROM view_embeddings WHERE encoder_id=? ORDER BY view_id", (encoder_id,)
            ).fetchall()
        out = {}
        for view_id, shape, data in rows:
            try:
                out[int(view_id)] = _decode_embedding(shape, data, f"view {view_id} embedding {encoder_id!r}")
            except MemoryInputError as exc:
                log.error("%s: %s; left out", self.path, exc)
        return out

    def view_count(self) -> int:
        """Views stored beyond the pairs' own crops."""
        with self._reading() as con:
            return int(con.execute("SELECT count(*) FROM views").fetchone()[0])

    def encoder_ids(self) -> dict[int, list[str]]:
        """pair id -> ids of the encoders that have embedded it."""
        with self._reading() as con:
            rows = con.execute("SELECT pair_id, encoder_id FROM embeddings ORDER BY pair_id, encoder_id").fetchall()
        out: dict[int, list[str]] = {}
        for pair_id, encoder_id in rows:
            out.setdefault(int(pair_id), []).append(encoder_id)
        return out

    def __len__(self) -> int:
        with self._reading() as con:
            return int(con.execute("SELECT count(*) FROM pairs").fetchone()[0])

    def check(self) -> list[str]:
        """Integrity problems: SQLite's own check, then every pair's bytes and embeddings (empty list: all well)."""
        with self._reading() as con:
            problems = [r[0] for r in con.execute("PRAGMA integrity_check")]
            problems = [] if problems == ["ok"] else problems
            problems += [f"foreign key: {r}" for r in con.execute("PRAGMA foreign_key_check")]
            rows = con.execute(
                "SELECT pair_id, label, created_unix, sample_rate_hz, audio_wav, audio_sha256, crop_png, crop_sha256 FROM pairs"
            ).fetchall()
            embs = con.execute("SELECT pair_id, encoder_id, shape, data FROM embeddings").fetchall()
            view_rows = con.execute("SELECT view_id, pair_id, source, created_unix, crop_png, crop_sha256 FROM views").fetchall()
            view_embs = con.execute("SELECT view_id, encoder_id, shape, data FROM view_embeddings").fetchall()
        for row in rows:
            try:
                self._decode_pair(row)
            except MemoryInputError as exc:
                problems.append(str(exc))
        for row in view_rows:
            try:
                _decode_view(row)
            except MemoryInputError as exc:
                problems.append(str(exc))
        for what, rows_ in (("pair", embs), ("view", view_embs)):
            for owner, encoder_id, shape, data in rows_:
                try:
                    _decode_embedding(shape, data, f"{what} {owner} embedding {encoder_id!r}")
                except MemoryInputError as exc:
                    problems.append(str(exc))
        return problems

    # -- export / import

    def export(self, directory: str | os.PathLike) -> int:
        """Write every pair to ``directory`` (new or empty): ``pair-N.wav/.png/.json``, ``pair-N-view-M.png`` and ``index.json`` last.

        Returns the number of pairs written. The wav and png files are the stored bytes themselves.
        """
        out = Path(directory)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise MemoryInputError(f"{out}: export needs a new or empty directory")
        with self._reading() as con:
            con.execute("BEGIN")  # one consistent snapshot
            try:
                rows = con.execute(
                    "SELECT pair_id, label, created_unix, sample_rate_hz, audio_wav, audio_sha256, crop_png, crop_sha256 "
                    "FROM pairs ORDER BY pair_id"
                ).fetchall()
                embs = con.execute("SELECT pair_id, encoder_id, shape, data FROM embeddings ORDER BY encoder_id").fetchall()
                view_rows = con.execute(
                    "SELECT view_id, pair_id, source, created_unix, crop_png, crop_sha256 FROM views ORDER BY view_id"
                ).fetchall()
                view_embs = con.execute("SELECT view_id, encoder_id, shape, data FROM view_embeddings ORDER BY encoder_id").fetchall()
            finally:
                con.execute("COMMIT")
        by_pair = _embedding_docs(embs)
        by_view = _embedding_docs(view_embs)
        views_of: dict[int, list[tuple]] = {}
        for row in view_rows:
            views_of.setdefault(int(row[1]), []).append(row)
        out.mkdir(parents=True, exist_ok=True)
        index = []
        for pair_id, label, created, rate, wav, wav_hash, png, png_hash in rows:
            stem = f"pair-{pair_id:06d}"
            meta = {
                "pair_id": pair_id,
                "label": label,
                "created_unix": created,
                "sample_rate_hz": rate,
                "audio": f"{stem}.wav",
                "audio_sha256": wav_hash,
                "crop": f"{stem}.png",
                "crop_sha256": png_hash,
                "embeddings": by_pair.get(pair_id, {}),
                "views": [],
            }
            for n, (view_id, _, source, view_created, view_png, view_hash) in enumerate(views_of.get(pair_id, []), start=1):
                name = f"{stem}-view-{n:03d}.png"
                write_atomic(out / name, view_png)
                meta["views"].append({"source": source, "created_unix": view_created, "crop": name, "crop_sha256": view_hash,
                                      "embeddings": by_view.get(view_id, {})})
            write_atomic(out / f"{stem}.wav", wav)
            write_atomic(out / f"{stem}.png", png)
            write_atomic(out / f"{stem}.json", json.dumps(meta, indent=1).encode())
            index.append({"pair_id": pair_id, "label": label, "meta": f"{stem}.json"})
        doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_unix": time.time(), "source": str(self.path), "pairs": index}
        write_atomic(out / INDEX_NAME, json.dumps(doc, indent=1).encode())
        _fsync_dir(out)
        log.info("%s: %d pairs exported to %s", self.path, len(index), out)
        return len(index)

    def import_(self, directory: str | os.PathLike) -> list[int]:
        """Add the pairs of an export directory; all or nothing. Returns the new pair ids.

        Every file is read and checked before anything is written. A pair whose audio and crop
        are already stored (same checksums) is skipped, so importing the same export twice adds nothing.
        """
        src = Path(directory)
        index_path = src / INDEX_NAME
        try:
            doc = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MemoryInputError(f"{src}: no {INDEX_NAME} here; not a (complete) showsay memory export") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise MemoryInputError(f"{index_path}: unreadable ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
            raise MemoryInputError(f"{index_path}: not a showsay memory export index")
        if doc.get("version") not in IMPORTABLE_EXPORT_VERSIONS:
            raise MemoryInputError(
                f"{index_path}: export version {doc.get('version')!r}; this showsay reads versions {', '.join(map(str, IMPORTABLE_EXPORT_VERSIONS))}"
            )
        staged = [_read_exported_pair(src, entry) for entry in doc.get("pairs", [])]
        new_ids: list[int] = []
        with self._transaction() as con:
            for label, created, rate, wav, png, embs, views in staged:
                dup = con.execute(
                    "SELECT pair_id FROM pairs WHERE audio_sha256=? AND crop_sha256=?", (_sha256(wav), _sha256(png))
                ).fetchone()
                if dup is not None:
                    log.info("%s: pair already stored as %d; skipped", src, dup[0])
                    continue
                pair_id = self._insert(con, label, created, rate, wav, png, embs)
                for source, view_created, view_png, view_embs in views:
                    self._insert_view(con, pair_id, source, view_created, view_png, view_embs)
                new_ids.append(pair_id)
        log.info("%s: %d pairs imported from %s (%d already present)", self.path, len(new_ids), src, len(staged) - len(new_ids))
        return new_ids

    def close(self) -> None:
        """Close the file (a clean close checkpoints the write-ahead log into it)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _embedding_docs(rows: list[tuple]) -> dict[int, dict[str, Any]]:
    """owner id -> {encoder id: the embedding as JSON (shape, dtype, base64 data)} of (owner, encoder, shape, data) rows."""
    out: dict[int, dict[str, Any]] = {}
    for owner, encoder_id, shape, data in rows:
        out.setdefault(int(owner), {})[encoder_id] = {
            "shape": json.loads(shape),
            "dtype": "float32-le",
            "data_base64": base64.b64encode(data).decode("ascii"),
        }
    return out


def _decode_embedding_docs(docs: Any, source: str) -> dict[str, np.ndarray]:
    return {
        str(k): _decode_embedding(json.dumps(v["shape"]), base64.b64decode(v["data_base64"], validate=True), f"{source} {k!r}")
        for k, v in docs.items()
    }


def _decode_view(row: tuple) -> StoredView:
    view_id, pair_id, source, created, png, png_hash = row
    if _sha256(png) != png_hash:
        raise MemoryInputError(f"view {view_id} of pair {pair_id}: crop bytes do not match their checksum")
    return StoredView(int(view_id), int(pair_id), str(source), float(created), decode_png(png, f"view {view_id} of pair {pair_id} crop"))


ExportedView = tuple[str, float, bytes, dict[str, np.ndarray]]  # source, created_unix, png bytes, embeddings


def _read_exported_pair(src: Path, entry: Any) -> tuple[str | None, float, int, bytes, bytes, dict[str, np.ndarray], list[ExportedView]]:
    """Read and check one exported pair: (label, created_unix, rate, wav bytes, png bytes, embeddings, views)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("meta"), str) or "/" in entry["meta"]:
        raise MemoryInputError(f"{src / INDEX_NAME}: bad pair entry {entry!r}")
    meta_path = src / entry["meta"]
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        wav_name, png_name = str(meta["audio"]), str(meta["crop"])
        if "/" in wav_name or "/" in png_name:
            raise ValueError("file names must not contain '/'")
        wav = (src / wav_name).read_bytes()
        png = (src / png_name).read_bytes()
        rate, created = int(meta["sample_rate_hz"]), float(meta["created_unix"])
        embs = _decode_embedding_docs(meta.get("embeddings", {}), str(meta_path))
        views: list[ExportedView] = []
        for n, v in enumerate(meta.get("views", [])):
            name = str(v["crop"])
            if "/" in name:
                raise ValueError("file names must not contain '/'")
            if v["source"] not in VIEW_SOURCES:
                raise ValueError(f"view {n}: source {v['source']!r} is none of {', '.join(VIEW_SOURCES)}")
            view_png = (src / name).read_bytes()
            if _sha256(view_png) != v.get("crop_sha256"):
                raise MemoryInputError(f"{meta_path}: view {src / name} does not match its recorded checksum")
            decode_png(view_png, str(src / name))
            views.append((str(v["source"]), float(v["created_unix"]), view_png, _decode_embedding_docs(v.get("embeddings", {}), f"{meta_path} view {n}")))
    except MemoryInputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MemoryInputError(f"{meta_path}: unreadable exported pair ({type(exc).__name__}: {exc})") from None
    if _sha256(wav) != meta.get("audio_sha256") or _sha256(png) != meta.get("crop_sha256"):
        raise MemoryInputError(f"{meta_path}: the wav or png does not match its recorded checksum")
    pcm, wav_rate = decode_wav(wav, str(src / wav_name))
    if wav_rate != rate:
        raise MemoryInputError(f"{src / wav_name}: rate {wav_rate} Hz differs from the recorded {rate} Hz")
    decode_png(png, str(src / png_name))
    label = _check_label(meta.get("label"))
    return label, created, rate, wav, png, embs, views


# ---------------------------------------------------------------------------- the state directory's lock

LOCK_NAME = "showsay.lock"


class StateDirInUse(MemoryFileError):
    """Another process (a second daemon, or ``showsay memory`` changing the file) holds the state directory's lock."""

    def __init__(self, message: str, pid: str, holder: str) -> None:
        super().__init__(message)
        self.pid = pid  # as the lock file gives it ("unknown" when it holds nothing readable)
        self.holder = holder  # what the holder said it is: DAEMON_HOLDER or a ``showsay memory ...`` command


DAEMON_HOLDER = "showsay run"
"""What a daemon writes into the lock file after its pid; ``showsay memory forget`` and friends write their own command."""


class StateDirLock:
    """An exclusive ``fcntl.flock`` on ``<state_dir>/showsay.lock``, held for as long as a daemon runs.

    Two daemons on one memory would each keep their own taught pairs in RAM and drift apart (one
    answers with a pair the other forgot), so the second is refused before it touches the memory.
    ``showsay memory forget|label|import`` hold it while they change the file, for the same reason.
    The kernel drops the lock when the holder exits, however it exits (``kill -9`` included), so
    a stale lock file never blocks a restart; the file holds the holder's pid and what it is
    (``1234 showsay run``) for the message.
    """

    def __init__(self, state_dir: str | os.PathLike, holder: str = DAEMON_HOLDER) -> None:
        self.dir = Path(state_dir).expanduser()
        self.path = self.dir / LOCK_NAME
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> "StateDirLock":
        """Take the lock; :class:`StateDirInUse` naming the holder (pid and what it is) when another process has it."""
        import fcntl

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise MemoryFileError(f"memory.state_dir {self.dir}: cannot create the lock file {LOCK_NAME} ({exc.strerror})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise MemoryFileError(f"{self.path}: not a regular file; move it away")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, _, holder = os.pread(fd, 200, 0).decode("ascii", "replace").strip().partition(" ")
                pid, holder = pid or "unknown", holder.strip() or DAEMON_HOLDER  # an older daemon wrote its pid alone
                what = "another showsay daemon" if holder == DAEMON_HOLDER else f"'{holder}'"
                raise StateDirInUse(
                    f"memory.state_dir {self.dir}: in use by {what} (pid {pid}); stop it first, or give this one its own state_dir",
                    pid, holder,
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.holder}\n".encode("ascii", "replace"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it would race with the next holder)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    close = release

    def __enter__(self) -> "StateDirLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
