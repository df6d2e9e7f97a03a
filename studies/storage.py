"""Optuna storages by URL, resumable and safe for several workers.

URLs:
  ``journal:PATH`` (or a bare path ending in ``.journal``/``.log``)
      Optuna's journal file storage (append-only log, file lock): the embedded default, safe
      for several processes on one machine and robust to a worker killed mid-write.
  ``sqlite:///PATH``
      Optuna's RDB storage on SQLite (one machine, few workers).
  ``postgresql://user@host:port/db`` (also ``postgresql+psycopg2://``, ``mysql+pymysql://``)
      RDB storage on a database server: the scale-out form, one URL for many machines.

A worker killed with SIGKILL leaves its trial RUNNING forever.  Two mechanisms recover it:
RDB storages get Optuna's heartbeat (a trial silent for ``3 * heartbeat`` seconds is failed and
its parameters re-enqueued by ``RetryHeartbeatStaleTrialCallback``), and every storage gets
:func:`reap_dead_workers`: each trial records its worker's host, pid and process start time, so a
new worker on the same host fails the RUNNING trials of dead processes at once and re-enqueues
their parameters.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
WORKER_ATTR = "worker"


class StorageError(ValueError):
    """The storage URL is malformed or the storage cannot be reached."""


def _scheme(url: str) -> str:
    if url.startswith("journal:"):
        return "journal"
    if "://" in url:
        return url.split("://", 1)[0].split("+", 1)[0]
    if url.endswith((".journal", ".log")):
        return "journal"
    return ""


def check_url(url: str) -> str:
    """Syntax check only (no connection); returns the scheme."""
    scheme = _scheme(url)
    if scheme == "journal":
        path = url.removeprefix("journal:")
        if not path:
            raise ValueError("journal storage needs a file path, e.g. journal:search/optuna.journal")
        return scheme
    if scheme not in RDB_SCHEMES:
        raise ValueError("unsupported storage URL; allowed: journal:PATH, sqlite:///PATH, postgresql://USER@HOST:PORT/DB, mysql+pymysql://...")
    if scheme == "sqlite" and not url.startswith("sqlite:///"):
        raise ValueError("sqlite storage must be sqlite:///PATH (three slashes)")
    return scheme


def _redact(url: str) -> str:
    if "://" in url and "@" in url:
        head, tail = url.split("://", 1)
        cred, host = tail.rsplit("@", 1)
        return f"{head}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url
    return url


class AtomicClaimRDBStorage(RDBStorage):
    """Optuna's RDB storage, with the claim of an enqueued trial made atomic on every database.

    ``Study.ask`` claims a WAITING (enqueued) trial with ``set_trial_state_values(id, RUNNING)``,
    which Optuna implements as read (``SELECT ... FOR UPDATE``), check ``state == WAITING``,
    write.  SQLite ignores ``FOR UPDATE`` and pysqlite runs the SELECT outside a transaction, so
    two workers can both read WAITING and both "win": they run the same trial, the first tells
    it COMPLETE and the second dies with ``ValueError: Cannot tell a COMPLETE trial`` (seen with
    3 workers on one SQLite study; a stress test claims ~25 % of 40 enqueued trials twice).
    Here the claim is one conditional UPDATE (``... SET state = RUNNING WHERE trial_id = ? AND
    state = WAITING``): the database serialises it, exactly one worker gets rowcount 1.
    """

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        import datetime

        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        T = models.TrialModel
        with _create_scoped_session(self.scoped_session) as session:
            # 1. compare-and-set: only a WAITING trial becomes RUNNING, in one statement
            won = session.query(T).filter(T.trial_id == trial_id, T.state == TrialState.WAITING).update(
                {T.state: TrialState.RUNNING}, synchronize_session=False) == 1
            if won:  # 2. its start time, in the same transaction
                T.find_or_raise_by_id(trial_id, session).datetime_start = datetime.datetime.now()
                return True
            # 3. lost: as Optuna's claim, a finished trial raises (UpdateFinishedTrialError), a running one is False
            self.check_trial_is_updatable(trial_id, T.find_or_raise_by_id(trial_id, session).state)
            return False


def _with_driver(url: str) -> str:
    """``postgresql://`` without a driver: SQLAlchemy 2.1 picks psycopg (3); use psycopg2 when only it is installed."""
    head, sep, tail = url.partition("://")
    if head in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2{sep}{tail}"
        return f"postgresql{sep}{tail}"
    return url


def open_storage(url: str, heartbeat_s: int = 10, key: str = "search.storage") -> optuna.storages.BaseStorage:
    """Connect to ``url`` now (before any trial runs); a failure is one line naming ``key``."""
    try:
        scheme = check_url(url)
    except ValueError as e:
        raise StorageError(f"{key} = {url!r} is invalid: {e}") from None
    if scheme == "journal":
        path = Path(url.removeprefix("journal:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a worker killed while appending leaves the lock file behind: others take it over after
            # `grace_period` seconds without change (appends take milliseconds)
            backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path), grace_period=10))
            return JournalStorage(backend)
        except OSError as e:
            raise StorageError(f"{key} = {url!r}: cannot open the journal file ({e.strerror or e})") from None
    if scheme == "sqlite":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    given, url = url, _with_driver(url)
    engine_kwargs = {"connect_args": {"timeout": 30}} if scheme == "sqlite" else {"pool_pre_ping": True}
    if scheme in ("postgresql", "postgres"):
        engine_kwargs["connect_args"] = {"connect_timeout": 5}
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return AtomicClaimRDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                  grace_period=3 * heartbeat_s,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
        except Exception as e:  # sqlalchemy OperationalError, ImportError (driver), ArgumentError ...
            # several workers creating the schema of a fresh database at once: one wins, the others
            # hit a unique violation / "already exists" and simply retry against the created tables
            text = str(e).lower()
            if attempt < 5 and ("already exists" in text or "duplicate key" in text or "unique" in text):
                time.sleep(0.2 * (attempt + 1))
                continue
            from stages.preflight import db_error_reason

            reason = db_error_reason(e, engine_kwargs.get("connect_args", {}).get("connect_timeout", 5))
            state = "cannot be used" if reason.startswith(("authentication", "database", "the server asks")) else "unreachable"
            raise StorageError(f"{key} = {_redact(given)!r}: storage {state} ({reason})") from None
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- dead workers
def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "alive"
        return "alive"


def worker_id() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid)}


def _dead(w: dict) -> bool:
    if not isinstance(w, dict) or w.get("host") != socket.gethostname():
        return False  # another machine: the RDB heartbeat handles it
    start = _proc_start(int(w["pid"]))
    return start is None or (start != "alive" and w.get("start") not in (None, "alive") and start != w["start"])


def reap_dead_workers(study: optuna.Study, orphan_grace_s: float = 60.0) -> list[int]:
    """Fail the RUNNING trials whose worker process on this host is gone; re-enqueue their params.

    Returns the numbers of the trials failed.  Safe with live workers: a trial is touched only
    when its recorded process (pid + start time) no longer exists on this host, or when it has
    no worker record ``orphan_grace_s`` seconds after it started (a live worker writes the
    record within milliseconds of creating the trial; only a kill in between leaves none).
    """
    import datetime

    reaped = []
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.user_attrs.get(WORKER_ATTR)
        if w is None:
            age = (now - t.datetime_start).total_seconds() if t.datetime_start else 0.0
            if age < orphan_grace_s:
                continue
        elif not _dead(w):
            continue
        try:
            ok = study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except RuntimeError:  # finished meanwhile
            continue
        if ok:
            reaped.append(t.number)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return reaped


__all__ = ["StorageError", "AtomicClaimRDBStorage", "check_url", "open_storage", "reap_dead_workers", "worker_id", "WORKER_ATTR"]
