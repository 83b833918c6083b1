"""Human curation of a run's clusters: an append-only edit log in ``RUN_DIR/curation.sqlite``.

The model's assignment ``base_clusters`` ``(N,)`` changes only when a refine ends (:mod:`scan_core.explore.refine`:
it keeps every cluster id's meaning and puts each image labelled one by one where the user did, so
the edits replay onto it unchanged); every human edit (naming a
cluster, relabelling or moving images, marking outliers, merging, splitting) is one row of the
``edits`` table, and the curated state is the replay of every edit not undone, in id order
(event sourcing). Undo flags the latest edit as undone; nothing is ever deleted.

Edit kinds and their payloads (``images`` are sorted unique indices in ``[0, N)``, stored as int32
arrays beside the JSON of the rest, so that an edit of a 100,000-image selection is one row and
replays as one array operation):
``name_cluster`` {cluster, name}, ``name_clusters`` {names: [[cluster, name], ...]} (several at once),
``relabel`` {images, label} (per-image label override),
``clear_label`` {images}, ``move`` {images, cluster}, ``accept`` {images, clusters} (the user checked
that these images belong where they are, one cluster id per image), ``outlier`` {images, outlier}, ``merge`` {source, target},
``split`` {cluster, images, new_cluster}, ``new_cluster`` {images, new_cluster, name (optional)} (a
cluster the model did not find, made from any images the user picked, from one cluster or several).
Images the user moved, accepted or made a new cluster of are *reviewed*: their cluster is the
user's word, not the model's. Two clusters with images never carry one name: naming a cluster
with another's name is refused, or merges it into that one when asked.

Several browser sessions (threads) and processes may write at once, and the app may be killed at
any moment: the database runs in WAL mode with ``synchronous=FULL``, each call opens its own
connection, and each write is one ``BEGIN IMMEDIATE`` transaction that validates the edit against
the state replayed inside that same transaction, so an acknowledged edit id is on disk and two
concurrent splits never get the same new cluster id.

A cluster id ``c`` exists when ``0 <= c < num_cluster_ids``, where ``num_cluster_ids`` is one more
than the largest id in ``base_clusters`` or named by a live edit; an emptied cluster (merge source)
still exists. The id of a split's or a new cluster's is ``num_cluster_ids`` at the time of the edit.

The states of the latest versions are kept in memory, per process (:data:`CACHED_STATES`, for the
:data:`CACHED_RUNS` logs used last): an edit validates against the state before it and adds itself
to it, and only a process that holds no state replays the log (``python bench/bench_curation.py`` times both at a million images).

Every write (an edit or an undo) raises the log's ``version`` by one; a :class:`CuratedState` knows
the version it shows, and :meth:`Curation.state_at` rebuilds the state of any earlier version. So an
edit made from a page can say which version the user was looking at (``seen=``): when another
session changed the clusters the edit names since then, the edit is refused with
:class:`StaleEdit` ("cluster 8 no longer exists: edit #41 by alice (merge)") instead of acting on
something the user never saw.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence, Set
from contextlib import closing, contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from ..method.cosine import spherical_kmeans

#: Characters that reorder or hide the text around them (a name that reads "gpj.exe" backwards).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
DB_NAME = "curation.sqlite"
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another's transaction before failing
MAX_TEXT = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS edits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0,
    made_at INTEGER,
    undone_at INTEGER,
    images BLOB,
    image_clusters BLOB
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: Logs written before versions existed: each edit was made at the version of its id; an undone
#: edit counts as undone before any version a page can have seen.
_ADD_VERSIONS = ("ALTER TABLE edits ADD COLUMN made_at INTEGER", "ALTER TABLE edits ADD COLUMN undone_at INTEGER",
                 "UPDATE edits SET made_at = id", "UPDATE edits SET undone_at = 0 WHERE undone = 1")
#: Logs written before the image lists were stored as arrays (in the JSON payload, which still replays).
_ADD_ARRAYS = ("ALTER TABLE edits ADD COLUMN images BLOB", "ALTER TABLE edits ADD COLUMN image_clusters BLOB")
_ROW = "SELECT id, at, who, kind, payload, undone, images, image_clusters FROM edits"
_EDIT = "SELECT kind, payload, images, image_clusters FROM edits"
INDEX_DTYPE = "<i4"  # image indices and clusters in the log: little-endian int32 (N < 2^31)
CACHED_STATES = 4    # curated states kept in memory per log (the latest and the versions pages saw)
CACHED_RUNS = 4      # logs whose states are kept in memory, the least recently used dropped first
#: (log, base) -> version -> state, in this process, least recently used first.
_states: OrderedDict[tuple[str, str], dict[int, CuratedState]] = OrderedDict()
_states_lock = threading.Lock()


def _run_states(key: tuple[str, str]) -> dict[int, CuratedState]:
    """The states kept of the log and base ``key`` (empty when none are), marked as used last; the
    least recently used logs' states are dropped past :data:`CACHED_RUNS` (they replay from the log)."""
    with _states_lock:
        states = _states.get(key)
        if states is None:
            states = _states[key] = {}
        else:
            _states.move_to_end(key)
        while len(_states) > CACHED_RUNS:
            _states.popitem(last=False)
        return states


class StaleEdit(ValueError):
    """An edit names a cluster that another session removed or changed after the user looked at it."""


class LogUnusable(sqlite3.DatabaseError):
    """The curation log could not be read or written: it is damaged or no SQLite database, or another
    program held it for longer than :data:`BUSY_TIMEOUT_MS`. ``path`` is the file and ``reason``
    sqlite's words; the failed call changed nothing in the file (its transaction is rolled back)."""

    def __init__(self, path: Path, reason: sqlite3.DatabaseError):
        super().__init__(f"the curation log {path} could not be used: {reason}")
        self.path, self.reason = path, str(reason)

    @property
    def locked(self) -> bool:
        """Another connection held the log (it may be free again later); otherwise it is damaged."""
        return "locked" in self.reason


class DuplicateName(ValueError):
    """A cluster would get the name another cluster with images has; ``holder`` is that cluster."""

    def __init__(self, message: str, holder: int):
        super().__init__(message)
        self.holder = holder


def cluster_label(cluster: int) -> str:
    """The curated label of an unnamed cluster: ``"cluster 3"``."""
    return f"cluster {cluster}"


class Marks(Set):
    """A set of image indices held as a boolean mask ``(N,)`` (read-only): outliers, reviewed images.
    It is a :class:`collections.abc.Set` (``in``, ``len``, ``|``, ``==`` a set of ints), and
    :attr:`indices` gives its members as a sorted array without a Python loop."""

    def __init__(self, mask: np.ndarray):
        self.mask = np.asarray(mask, dtype=bool)
        self.mask.setflags(write=False)

    @classmethod
    def _from_iterable(cls, iterable):  # what the Set operators build from plain iterables
        return frozenset(iterable)

    @property
    def indices(self) -> np.ndarray:
        """The members, sorted ``(M,)`` int64."""
        return np.flatnonzero(self.mask)

    def __contains__(self, index: object) -> bool:
        return bool(isinstance(index, (int, np.integer)) and 0 <= index < len(self.mask) and self.mask[index])

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self.mask))

    def __or__(self, other):
        if isinstance(other, Marks) and len(other.mask) == len(self.mask):
            return Marks(self.mask | other.mask)
        return super().__or__(other)

    __hash__ = Set._hash


@dataclass(frozen=True, eq=False)
class CuratedState:
    """The curated view of ``N`` images.

    ``clusters`` ``(N,)`` int (read-only): base assignment with move/merge/split applied;
    ``names``: cluster id -> name; ``label_of`` ``(N,)`` int32: each image's own label, an index
    into ``label_names`` (-1: none); ``outliers``: images flagged as outliers; ``reviewed``: images
    the user moved or accepted one by one; ``num_cluster_ids``: ids ``0..num_cluster_ids-1`` exist
    (some may be empty); ``version``: the curation log's version this state shows.
    """

    clusters: np.ndarray
    names: dict[int, str]
    label_of: np.ndarray
    label_names: tuple[str, ...]
    outliers: Marks
    reviewed: Marks
    num_cluster_ids: int
    version: int = 0

    @property
    def overrides(self) -> dict[int, str]:
        """Image index -> its own label, for the images that have one."""
        labelled = np.flatnonzero(self.label_of >= 0)
        return {int(i): self.label_names[self.label_of[i]] for i in labelled}

    def label_codes(self, rows: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """The curated labels as codes: ``(codes, names)``, ``codes`` ``(N,)`` int64 (of the images
        ``rows``, a slice or indices, when given) into ``names`` ``(C,)`` str, so that
        :meth:`labels` is ``names[codes]`` (a name may stand at more than one code)."""
        names = np.array([self.names.get(c, cluster_label(c)) for c in range(self.num_cluster_ids)] +
                         list(self.label_names), dtype=str)
        own = self.label_of[rows]
        return np.where(own >= 0, self.num_cluster_ids + own, self.clusters[rows]), names

    def labels(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Curated label per image ``(N,)`` str (of the images ``rows``, a slice or indices, when given): the
        image's own label, else its cluster's name, else :func:`cluster_label` (``"cluster 3"``)."""
        codes, names = self.label_codes(rows)
        return names[codes]

    def label_set(self) -> list[str]:
        """The curated labels some image has, sorted."""
        codes, names = self.label_codes()
        return sorted(set(names[np.flatnonzero(np.bincount(codes, minlength=len(names)))].tolist()))

    def cluster_sizes(self) -> np.ndarray:
        """Images per cluster id ``(num_cluster_ids,)`` int64 (0 for emptied clusters)."""
        return np.bincount(self.clusters, minlength=self.num_cluster_ids)

    def members(self, cluster: int) -> np.ndarray:
        """Sorted indices of the images in ``cluster``."""
        return np.flatnonzero(self.clusters == cluster)

    def digest(self) -> str:
        """A hex digest that is the same for equal states and differs after any edit (a cache key)."""
        used = np.unique(self.label_of[self.label_of >= 0])
        own = np.where(self.label_of >= 0, np.searchsorted(used, self.label_of), -1).astype(np.int32)
        text = json.dumps([sorted(self.names.items()), [self.label_names[i] for i in used], self.num_cluster_ids])
        arrays = (np.ascontiguousarray(self.clusters, np.int64), own, self.outliers.mask, self.reviewed.mask)
        return sha256(b"".join(a.tobytes() for a in arrays) + text.encode()).hexdigest()


class _Replay:
    """The curated state being built: mutable copies of its arrays, one edit applied at a time."""

    def __init__(self, state: CuratedState):
        self.clusters = np.array(state.clusters, dtype=np.int64)
        self.names = dict(state.names)
        self.label_of = np.array(state.label_of, dtype=np.int32)
        self.label_names = list(state.label_names)
        self._label_index = {name: i for i, name in enumerate(self.label_names)}
        self.outliers, self.reviewed = np.array(state.outliers.mask), np.array(state.reviewed.mask)
        self.num_ids = state.num_cluster_ids

    def apply(self, kind: str, payload: dict) -> None:
        """Apply one edit (module docstring) to the arrays."""
        images = payload.get("images")
        if images is not None:
            images = np.asarray(images, dtype=np.int64)
        if kind == "name_cluster":
            self.names[payload["cluster"]] = payload["name"]
            self.num_ids = max(self.num_ids, payload["cluster"] + 1)
        elif kind == "name_clusters":
            self.names.update((cluster, name) for cluster, name in payload["names"])
            self.num_ids = max(self.num_ids, *(cluster + 1 for cluster, _ in payload["names"]))
        elif kind == "relabel":
            self.label_of[images] = self._label_index.setdefault(payload["label"], len(self._label_index))
            if len(self._label_index) > len(self.label_names):
                self.label_names.append(payload["label"])
        elif kind == "clear_label":
            self.label_of[images] = -1
        elif kind == "outlier":
            self.outliers[images] = bool(payload["outlier"])
        elif kind in ("move", "split", "new_cluster"):
            target = payload["cluster" if kind == "move" else "new_cluster"]
            self.clusters[images] = target
            self.num_ids = max(self.num_ids, target + 1)
            if kind != "split":  # a split's images are k-means's choice, the others the user's
                self.reviewed[images] = True
            if payload.get("name") is not None:
                self.names[target] = payload["name"]
        elif kind == "accept":
            self.reviewed[images] = True
        elif kind == "merge":
            self.clusters[self.clusters == payload["source"]] = payload["target"]
            self.num_ids = max(self.num_ids, payload["source"] + 1, payload["target"] + 1)
        else:
            raise ValueError(f"unknown edit kind {kind!r} in the curation log")

    def state(self, version: int) -> CuratedState:
        self.clusters.setflags(write=False)
        self.label_of.setflags(write=False)
        return CuratedState(self.clusters, self.names, self.label_of, tuple(self.label_names), Marks(self.outliers),
                            Marks(self.reviewed), self.num_ids, version)


def model_state(base_clusters: np.ndarray) -> CuratedState:
    """The state before any edit: the model's clusters ``(N,)``, no names, labels or marks."""
    clusters = np.array(base_clusters, dtype=np.int64)
    clusters.setflags(write=False)
    n = len(clusters)
    return CuratedState(clusters, {}, np.full(n, -1, np.int32), (), Marks(np.zeros(n, bool)), Marks(np.zeros(n, bool)),
                        int(clusters.max()) + 1 if n else 0)


def replay(base_clusters: np.ndarray, edits: Sequence[tuple[str, dict]], version: int = 0,
           start: CuratedState | None = None) -> CuratedState:
    """Apply ``[(kind, payload), ...]`` in order to ``base_clusters`` ``(N,)`` (or to ``start``, a
    state of them); the result shows ``version``. Each edit is a few array operations, whatever
    the number of images it names (bench/bench_curation.py)."""
    builder = _Replay(start if start is not None else model_state(base_clusters))
    for kind, payload in edits:
        builder.apply(kind, payload)
    return builder.state(version)


class Curation:
    """The curation log of one run directory; every method opens its own connection (thread-safe)."""

    def __init__(self, run_dir: Path, base_clusters: np.ndarray, image_ids: Sequence[str] | np.ndarray | None = None):
        base = np.asarray(base_clusters)
        if base.ndim != 1 or not np.issubdtype(base.dtype, np.integer):
            raise ValueError(f"base_clusters must be a 1-D integer array, got {base.dtype} {base.shape}")
        if len(base) == 0:
            raise ValueError("base_clusters is empty: there is nothing to curate")
        if base.min() < 0:
            raise ValueError(f"base_clusters must be non-negative, found {int(base.min())}")
        if image_ids is not None and len(image_ids) != len(base):
            raise ValueError(f"{len(base)} base clusters but {len(image_ids)} image ids")
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise ValueError(f"run directory {run_dir} does not exist")
        self.path = run_dir / DB_NAME
        self.base = base.astype(np.int64)
        self.base.setflags(write=False)
        log = self._init_db(None if image_ids is None else sha256("\0".join(map(str, image_ids)).encode()).hexdigest())
        self._key = (log, sha256(self.base.tobytes()).hexdigest())
        _run_states(self._key)

    @property
    def num_images(self) -> int:
        return len(self.base)

    # ---- database ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA synchronous = FULL")
        return db

    @contextmanager
    def _named_errors(self) -> Iterator[None]:
        """sqlite's errors inside the block raised as :class:`LogUnusable`, which names the file."""
        try:
            yield
        except LogUnusable:
            raise
        except sqlite3.DatabaseError as error:
            raise LogUnusable(self.path, error) from error

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction on a fresh connection (``BEGIN IMMEDIATE``: a write; ``BEGIN``: a read
        whose statements see one snapshot), committed on success, rolled back on an error; sqlite's
        errors raised as :class:`LogUnusable`."""
        with self._named_errors(), closing(self._connect()) as db:
            db.execute(begin)
            try:
                yield db
            except BaseException:
                if db.in_transaction:  # sqlite may have rolled back already
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _switch_to_wal(self) -> None:
        """Put the database in WAL mode (persistent, so done once per file).

        Switching needs an exclusive lock and sqlite answers "database is locked" at once, without
        its busy handler, when another process opens the same new file at that moment: retry.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        with self._named_errors():
            while True:
                try:
                    with closing(self._connect()) as db:
                        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                            db.execute("PRAGMA journal_mode = WAL")
                    return
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    def _init_db(self, ids_digest: str | None) -> str:
        """Create or upgrade the log; its identity, a random id it keeps (a log made anew at the
        same path, for a run trained again under the same name, is another log)."""
        self._switch_to_wal()
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(edits)")}
            if "made_at" not in columns:
                for statement in _ADD_VERSIONS:
                    db.execute(statement)
            if "images" not in columns:
                for statement in _ADD_ARRAYS:
                    db.execute(statement)
            stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if "version" not in stored:
                latest = db.execute("SELECT COALESCE(MAX(id), 0) FROM edits").fetchone()[0]
                db.execute("INSERT INTO meta VALUES ('version', ?)", (str(latest),))
            if "log_id" not in stored:
                stored["log_id"] = secrets.token_hex(16)
                db.execute("INSERT INTO meta VALUES ('log_id', ?)", (stored["log_id"],))
            if "num_images" not in stored:
                db.execute("INSERT INTO meta VALUES ('num_images', ?)", (str(self.num_images),))
            elif int(stored["num_images"]) != self.num_images:
                raise ValueError(f"{self.path} curates {stored['num_images']} images, "
                                 f"not the {self.num_images} given")
            if ids_digest is not None:
                if "ids_sha256" not in stored:
                    db.execute("INSERT INTO meta VALUES ('ids_sha256', ?)", (ids_digest,))
                elif stored["ids_sha256"] != ids_digest:
                    raise ValueError(f"{self.path} was made for other image ids than the ones given")
        return stored["log_id"]

    @staticmethod
    def _version(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def _next_version(self, db: sqlite3.Connection) -> int:
        """Raise the log's version by one (inside a write transaction) and return it."""
        version = self._version(db) + 1
        db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(version),))
        return version

    def _replay(self, db: sqlite3.Connection, version: int | None = None) -> CuratedState:
        """The state now, or as it was at ``version``: kept in memory per version (the latest and
        those pages saw), else replayed from the log; a write adds its edit to the latest."""
        latest = self._version(db)
        version = latest if version is None else version
        kept = _run_states(self._key).get(version)
        if kept is not None:
            return kept
        if version == latest:
            rows = db.execute(f"{_EDIT} WHERE undone = 0 ORDER BY id").fetchall()
        else:
            rows = db.execute(f"{_EDIT} WHERE made_at <= ? AND (undone_at IS NULL OR undone_at > ?) ORDER BY id",
                              (version, version)).fetchall()
        return self._keep(replay(self.base, [(kind, _payload(*row)) for kind, *row in rows], version))

    def _keep(self, state: CuratedState) -> CuratedState:
        """Remember ``state`` (the :data:`CACHED_STATES` latest versions are kept)."""
        states = _run_states(self._key)
        states[state.version] = state
        for old in sorted(states)[:-CACHED_STATES]:
            states.pop(old, None)
        return state

    def _check_seen(self, db: sqlite3.Connection, now: CuratedState, seen: int, clusters: Sequence[int],
                    same_members: Sequence[int], same_places: np.ndarray | None = None) -> None:
        """StaleEdit when a cluster of ``clusters`` or ``same_members`` had members at version ``seen``
        and has none now, when one of ``same_members`` has other members now than then, or when an
        image of ``same_places`` ``(M,)`` is in another cluster now than then."""
        seen = _index(seen, "seen (a curation version)")
        if seen > now.version:
            raise ValueError(f"seen={seen} is ahead of the curation log (version {now.version})")
        if seen == now.version:
            return
        then = self._replay(db, seen)
        change = db.execute(f"{_ROW} WHERE made_at > ? OR undone_at > ? ORDER BY MAX(made_at, COALESCE(undone_at, 0)) "
                            "DESC LIMIT 1", (seen, seen)).fetchone()
        last = _row(change)
        latest = f"edit #{last['id']} by {last['who']} ({last['kind']}{', undone' if last['undone'] else ''})"
        for cluster in (*clusters, *same_members):
            if len(then.members(cluster)) and not len(now.members(cluster)):
                raise StaleEdit(f"cluster {cluster} no longer exists: {latest} changed it after you looked")
        for cluster in same_members:
            if not np.array_equal(then.members(cluster), now.members(cluster)):
                raise StaleEdit(f"cluster {cluster} changed after you looked at it ({latest}); look at it again")
        if same_places is not None:
            moved = same_places[then.clusters[same_places] != now.clusters[same_places]]
            if len(moved):
                raise StaleEdit(f"images {moved[:10].tolist()} are no longer in the clusters you saw them in "
                                f"({latest}); look at them again")

    def _append(self, kind: str, payload: dict, who: str,
                check: Callable[[CuratedState, dict], None] | None = None, seen: int | None = None,
                clusters: Sequence[int] = (), same_members: Sequence[int] = (),
                same_places: np.ndarray | None = None) -> tuple[int, dict]:
        """Insert one edit; ``check(state, payload)`` validates it (and may complete the payload)
        against the state replayed inside the write transaction. With ``seen`` (the version the
        user looked at), the ``clusters`` it names must still exist, ``same_members`` be unchanged
        and the images ``same_places`` in the clusters they were in (:meth:`_check_seen`). Returns
        ``(edit id, payload)``."""
        who = _text(who, "who")
        with self._transaction() as db:
            now = self._replay(db)
            if seen is not None:
                self._check_seen(db, now, seen, clusters, same_members, same_places)
            if check is not None:
                check(now, payload)
            arrays = {key: np.asarray(payload[key], dtype=INDEX_DTYPE).tobytes() if key in payload else None
                      for key in ("images", "clusters")}  # image lists as int32 arrays, the rest as JSON
            text = json.dumps({key: value for key, value in payload.items() if key not in ("images", "clusters")})
            version = self._next_version(db)
            cursor = db.execute("INSERT INTO edits (at, who, kind, payload, made_at, images, image_clusters) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (time.time(), who, kind, text, version, arrays["images"], arrays["clusters"]))
        self._keep(replay(self.base, [(kind, payload)], version, start=now))  # committed: the new latest
        return int(cursor.lastrowid), payload

    # ---- edits -------------------------------------------------------------------------------
    def name_cluster(self, cluster: int, name: str, who: str = "anonymous", seen: int | None = None,
                     merge_same_name: bool = False) -> int:
        """Name ``cluster``; returns the edit id. ``seen``: the version the user looked at (module
        docstring). A name another cluster with images has is refused
        (:class:`DuplicateName`), or with ``merge_same_name`` the edit is a merge of ``cluster`` into
        that one (:meth:`merge`), which keeps its name."""
        if not isinstance(merge_same_name, (bool, np.bool_)):
            raise ValueError(f"merge_same_name must be True or False, got {merge_same_name!r}")
        payload: dict[str, Any] = {"cluster": _index(cluster, "cluster"), "name": _text(name, "cluster name")}
        if merge_same_name:
            holder = _name_holder(self.state(), payload["name"], payload["cluster"])
            if holder is not None:
                return self.merge(payload["cluster"], holder, who, seen)

        def check(state: CuratedState, p: dict) -> None:
            _existing(state, p["cluster"])
            _unique_name(state, p["name"], p["cluster"])

        return self._append("name_cluster", payload, who, check, seen, clusters=[payload["cluster"]])[0]

    def name_clusters(self, names: dict[int, str], who: str = "anonymous", seen: int | None = None) -> int:
        """Name several clusters in one edit (``{cluster: name}``, e.g. every suggested name accepted at
        once); one undo takes every name back. Each name is refused as :meth:`name_cluster` refuses it,
        and two of them may not be the same."""
        if not names:
            raise ValueError("name_clusters needs at least one cluster to name")
        pairs = sorted((_index(cluster, "cluster"), _text(name, "cluster name")) for cluster, name in names.items())
        given = [name for _, name in pairs]
        if len(set(given)) < len(given):
            raise ValueError(f"one name for two clusters: {sorted(n for n in set(given) if given.count(n) > 1)}")

        def check(state: CuratedState, p: dict) -> None:
            renamed = {cluster for cluster, _ in p["names"]}  # a holder renamed in this edit gives its name up
            for cluster, name in p["names"]:
                _existing(state, cluster)
                _unique_name(state, name, cluster, renamed)

        return self._append("name_clusters", {"names": [list(pair) for pair in pairs]}, who, check, seen,
                            clusters=[cluster for cluster, _ in pairs])[0]

    def relabel(self, images: Sequence[int] | np.ndarray, label: str, who: str = "anonymous") -> int:
        """Give ``images`` the curated label ``label`` (overrides their cluster's); returns the edit id."""
        payload = {"images": self._images(images), "label": _text(label, "label")}
        return self._append("relabel", payload, who)[0]

    def clear_label(self, images: Sequence[int] | np.ndarray, who: str = "anonymous") -> int:
        """Drop the per-image labels of ``images``; returns the edit id."""
        return self._append("clear_label", {"images": self._images(images)}, who)[0]

    def move(self, images: Sequence[int] | np.ndarray, cluster: int, who: str = "anonymous",
             seen: int | None = None) -> int:
        """Assign ``images`` to the existing ``cluster``; returns the edit id."""
        payload: dict[str, Any] = {"images": self._images(images), "cluster": _index(cluster, "cluster")}
        return self._append("move", payload, who, lambda state, p: _existing(state, p["cluster"]),
                            seen, clusters=[payload["cluster"]])[0]

    def accept(self, images: Sequence[int] | np.ndarray, clusters: int | Sequence[int] | np.ndarray,
               who: str = "anonymous") -> int:
        """Record that the user checked ``images`` and each belongs in its cluster of ``clusters`` (one
        id for all, or one per image, in the order given), where it is now (StaleEdit naming the
        images that are elsewhere: another session moved them); returns the edit id."""
        given, wanted = np.asarray(images), np.asarray(clusters)
        if wanted.ndim == 0 and given.ndim == 1:
            wanted = np.full(given.shape, wanted)
        if wanted.shape != given.shape:
            raise ValueError(f"clusters must be one id or one per image, got {np.shape(clusters)} for {given.shape} images")
        order = self._images(images)
        for cluster in np.unique(wanted).tolist():  # a few distinct ids, however many images
            _index(cluster, "cluster")
        last = len(given) - 1 - np.unique(given[::-1], return_index=True)[1]  # an image given twice: its last
        payload = {"images": order, "clusters": wanted[last].astype(np.int64)}

        def check(state: CuratedState, p: dict) -> None:
            images, clusters = np.asarray(p["images"], dtype=np.int64), np.asarray(p["clusters"])
            elsewhere = images[state.clusters[images] != clusters]
            if len(elsewhere):
                raise StaleEdit(f"images {elsewhere[:10].tolist()} are no longer in the clusters you saw them in: "
                                "someone moved them after you looked")

        return self._append("accept", payload, who, check)[0]

    def mark_outliers(self, images: Sequence[int] | np.ndarray, outlier: bool = True,
                      who: str = "anonymous") -> int:
        """Flag (or with ``outlier=False`` unflag) ``images`` as outliers; returns the edit id."""
        if not isinstance(outlier, (bool, np.bool_)):
            raise ValueError(f"outlier must be True or False, got {outlier!r}")
        return self._append("outlier", {"images": self._images(images), "outlier": bool(outlier)}, who)[0]

    def merge(self, source: int, target: int, who: str = "anonymous", seen: int | None = None) -> int:
        """Move every image of cluster ``source`` into ``target`` (source becomes empty); returns the
        edit id. With ``seen``, ``source`` must hold the images it held then."""
        payload = {"source": _index(source, "source cluster"), "target": _index(target, "target cluster")}
        if payload["source"] == payload["target"]:
            raise ValueError(f"cannot merge cluster {source} into itself")

        def check(state: CuratedState, p: dict) -> None:
            _existing(state, p["source"])
            _existing(state, p["target"])
            if not len(state.members(p["source"])):
                raise ValueError(f"cluster {p['source']} is empty: nothing to merge")

        return self._append("merge", payload, who, check, seen, clusters=[payload["target"]],
                            same_members=[payload["source"]])[0]

    def split(self, cluster: int, images: Sequence[int] | np.ndarray, who: str = "anonymous",
              seen: int | None = None) -> int:
        """Move ``images`` (a proper non-empty subset of ``cluster``) into a new cluster; returns its
        id. With ``seen``, ``cluster`` must hold the images it held then."""
        payload: dict[str, Any] = {"cluster": _index(cluster, "cluster"), "images": self._images(images)}

        def check(state: CuratedState, p: dict) -> None:
            _existing(state, p["cluster"])
            moving = np.asarray(p["images"], dtype=np.int64)
            strays = moving[state.clusters[moving] != p["cluster"]]
            if len(strays):
                raise ValueError(f"images {strays[:10].tolist()} are not in cluster {p['cluster']}")
            if len(moving) == len(state.members(p["cluster"])):
                raise ValueError(f"a split must leave images in cluster {p['cluster']}; "
                                 "all of its images were given")
            p["new_cluster"] = state.num_cluster_ids

        return self._append("split", payload, who, check, seen, same_members=[payload["cluster"]])[1]["new_cluster"]

    def new_cluster(self, images: Sequence[int] | np.ndarray, who: str = "anonymous", seen: int | None = None,
                    name: str | None = None) -> int:
        """Make a new cluster of ``images`` (from any clusters; a cluster the model did not find, or
        a split by the user's selection) and return its id, the next free one (``num_cluster_ids``).
        The images become *reviewed*: a refine learns the new cluster from them. ``name``: its name
        at once (refused when another cluster with images has it). With ``seen``, the images must be
        in the clusters they were in then."""
        payload: dict[str, Any] = {"images": self._images(images)}
        if name is not None:
            payload["name"] = _text(name, "cluster name")

        def check(state: CuratedState, p: dict) -> None:
            if "name" in p:
                _unique_name(state, p["name"], None)
            p["new_cluster"] = state.num_cluster_ids

        return self._append("new_cluster", payload, who, check, seen,
                            same_places=payload["images"])[1]["new_cluster"]

    def undo(self, who: str | None = None, edit: int | None = None) -> dict | None:
        """Mark an edit undone and return it: edit number ``edit`` when given (ValueError if there
        is none or it is undone already), else the latest live edit (of ``who`` when given; None if
        none is left). The state is the replay of the edits still live, so undoing an older edit
        keeps every later one."""
        params: tuple = ()
        query = f"{_ROW} WHERE undone = 0"
        if edit is not None:
            query, params = f"{_ROW} WHERE id = ?", (_index(edit, "edit"),)
        elif who is not None:
            query, params = query + " AND who = ?", (_text(who, "who"),)
        with self._transaction() as db:
            row = db.execute(query + " ORDER BY id DESC LIMIT 1", params).fetchone()
            if row is None and edit is not None:
                raise ValueError(f"there is no edit #{edit}")
            if row is None:
                return None
            if row[5]:
                raise ValueError(f"edit #{edit} is undone already")
            db.execute("UPDATE edits SET undone = 1, undone_at = ? WHERE id = ?", (self._next_version(db), row[0]))
        return {**_row(row), "undone": True}

    # ---- reading -----------------------------------------------------------------------------
    def history(self, limit: int = 50) -> list[dict]:
        """The latest ``limit`` edits, newest first: dicts of id, at, who, kind, payload, undone."""
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        with self._named_errors(), closing(self._connect()) as db:
            rows = db.execute(f"{_ROW} ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        return [_row(row) for row in rows]

    def state(self) -> CuratedState:
        """The replay of every live edit on the base clusters."""
        with self._transaction("BEGIN") as db:  # the version and the edits from one snapshot
            return self._replay(db)

    def state_at(self, version: int) -> CuratedState:
        """The state as it was at ``version`` (edits made by then and not yet undone then)."""
        version = _index(version, "version")
        with self._transaction("BEGIN") as db:  # the version and the edits from one snapshot
            if version > self._version(db):
                raise ValueError(f"version {version} is ahead of the curation log (version {self._version(db)})")
            return self._replay(db, version)

    def _images(self, images: Sequence[int] | np.ndarray) -> np.ndarray:
        """Validated, sorted, de-duplicated image indices in ``[0, N)`` ``(M,)`` int64."""
        array = np.asarray(images)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"images must be a non-empty 1-D list of indices, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"image indices must be integers, got {array.dtype}")
        bad = array[(array < 0) | (array >= self.num_images)]
        if len(bad):
            raise ValueError(f"image indices {bad[:10].tolist()} are outside [0, {self.num_images})")
        return np.unique(array).astype(np.int64)


def _payload(text: str, images: bytes | None, clusters: bytes | None) -> dict:
    """An edit's payload: its JSON, with the image lists stored as arrays put back (``(M,)`` int64)."""
    payload = json.loads(text)
    for key, stored in (("images", images), ("clusters", clusters)):
        if stored is not None:
            payload[key] = np.frombuffer(stored, dtype=INDEX_DTYPE).astype(np.int64)
    return payload


def _row(row: tuple) -> dict:
    edit_id, at, who, kind, payload, undone, images, clusters = row
    return {"id": edit_id, "at": at, "who": who, "kind": kind, "payload": _payload(payload, images, clusters),
            "undone": bool(undone)}


def _text(value: str, what: str) -> str:
    """``value`` stripped; a non-empty string of at most :data:`MAX_TEXT` characters."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise ValueError(f"{what} must not be empty")
    hidden = [c for c in value if unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS]
    if hidden:
        raise ValueError(f"{what} contains an invisible control character "
                         f"(U+{ord(hidden[0]):04X} {unicodedata.name(hidden[0], 'control')}); remove it")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{what} has {len(value)} characters; at most {MAX_TEXT} are allowed")
    return value


def _index(value: int, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _existing(state: CuratedState, cluster: int) -> None:
    if cluster >= state.num_cluster_ids:
        raise ValueError(f"cluster {cluster} does not exist (ids are 0..{state.num_cluster_ids - 1})")


def _name_holder(state: CuratedState, name: str, cluster: int | None) -> int | None:
    """The cluster with images, other than ``cluster``, whose name is ``name``, or None."""
    sizes = state.cluster_sizes()
    return next((other for other, given in sorted(state.names.items())
                 if other != cluster and given == name and sizes[other]), None)


def _unique_name(state: CuratedState, name: str, cluster: int | None, renamed: Set[int] = frozenset()) -> None:
    """:class:`DuplicateName` when a cluster with images other than ``cluster`` (and not among
    ``renamed``, the clusters the same edit names anew) is called ``name``."""
    holder = _name_holder(state, name, cluster)
    if holder is not None and holder not in renamed:
        raise DuplicateName(f"cluster {holder} is already named {state.names[holder]!r}: two clusters with one "
                            f"name cannot be told apart (by a refine, by an export); choose another name"
                            + (f", or merge cluster {cluster} into cluster {holder}" if cluster is not None else ""),
                            holder)


def split_in_two(features: np.ndarray, members: np.ndarray, seed: int = 0) -> np.ndarray:
    """The members forming the second of two spherical k-means groups.

    ``features`` ``(N, D)``, ``members`` ``(M,)`` indices into it, M >= 2; k-means (faiss, best of
    3 restarts) on the L2-normalised member features. Returns the sorted indices of group 1, a
    proper non-empty subset of ``members`` ready for :meth:`Curation.split`.
    """
    features = np.asarray(features)
    members = np.asarray(members)
    if features.ndim != 2 or features.shape[1] == 0:
        raise ValueError(f"features must be a (N, D) array, got shape {features.shape}")
    if members.ndim != 1 or not np.issubdtype(members.dtype, np.integer):
        raise ValueError(f"members must be a 1-D integer array, got {members.dtype} {members.shape}")
    members = np.unique(members)
    if len(members) < 2:
        raise ValueError(f"splitting needs at least 2 members, got {len(members)}")
    if members[0] < 0 or members[-1] >= len(features):
        raise ValueError(f"members must be indices in [0, {len(features)})")
    x = features[members]
    if not np.isfinite(x).all():
        raise ValueError("features of the members contain NaN or infinity")
    group = spherical_kmeans(x, 2, seed)
    second = members[group == 1]
    if len(second) in (0, len(members)):
        raise ValueError("k-means put every member in one group: their features do not separate")
    return second
