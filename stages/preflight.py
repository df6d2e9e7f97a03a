"""Preflight: reach the tracking server and the study storage before any work, or stop in one line.

MLflow retries an unreachable HTTP server for minutes (``http://127.0.0.1:9``: 255 s, then a
traceback) and a PostgreSQL store with a wrong password for seconds; Optuna's RDB storage the
same.  The checks here try once, with a short timeout, and raise :class:`PreflightError` whose
message is one line naming the params key, the URL (password redacted) and what to do:

    tracking.uri = 'http://127.0.0.1:9': no MLflow tracking server answers (connection refused);
    start it (mlflow server --host 127.0.0.1 --port 9) or set tracking.uri to the default sqlite:///mlflow.db

URL kinds: ``http(s)://`` (GET ``/health`` of the MLflow server), SQLAlchemy database URLs
(``postgresql://``, ``mysql://``...: connect + ``SELECT 1``), ``sqlite:///PATH`` (its folder can be
created and written), ``file:`` / plain paths (MLflow file store: folder writable), ``journal:``
(Optuna journal file: folder writable).  Other schemes (plugins, ``databricks``) are left to
their clients.  Nothing is created except missing parent folders of local stores (the stage run
would create them anyway).
"""
from __future__ import annotations

import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_TRACKING = "sqlite:///mlflow.db"
DEFAULT_STORAGE = "journal:search/optuna.journal"
DB_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")


class PreflightError(RuntimeError):
    """A tracking / storage URL that cannot be used; ``str(e)`` is one line."""


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _scheme(url: str) -> str:
    """The store kind of a URL: ``http``, ``sqlite``, ``postgresql``..., ``journal``, or ``file``
    for a plain path (MLflow's file store); ``databricks`` and other bare names as they are."""
    if url.startswith("journal:"):
        return "journal"
    if "://" in url:
        return url.split("://", 1)[0].split("+", 1)[0].lower()
    if url.startswith("file:"):
        return "file"
    if url in ("databricks", "databricks-uc", "uc") or re.match(r"^[a-z][a-z0-9+.-]*:[^\\/]", url):
        return url.split(":", 1)[0].lower()  # e.g. databricks, databricks://profile (left to MLflow)
    return "file"


def _writable_folder(folder: Path, what: str) -> str | None:
    """None when ``folder`` exists (or can be made) and a file can be created in it; else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the folder {folder} of the {what} ({e.strerror or e})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} of the {what} is not writable"
    return None


# --------------------------------------------------------------------------- databases
def db_error_reason(e: BaseException, timeout_s: float) -> str:
    """A database driver's connection error as a short reason (wrong password, no server, ...)."""
    text = " ".join(str(getattr(e, "orig", None) or e).split())
    low = text.lower()
    if "password authentication failed" in low or "access denied" in low or "authentication failed" in low:
        user = re.search(r'for user "?([^"\s]+)"?', text)
        return f"authentication failed{' for user ' + user.group(1) if user else ''} (wrong password?)"
    if "no password supplied" in low:
        return "the server asks for a password and the URL has none"
    m = re.search(r'database "([^"]+)" does not exist', text)
    if m:
        return f"database {m.group(1)!r} does not exist on the server (create it: createdb {m.group(1)})"
    if "connection refused" in low:
        return "connection refused: no database server listens there"
    if "timeout" in low or "timed out" in low:
        return f"no answer within {timeout_s:g} s"
    if "could not translate host name" in low or "name or service not known" in low:
        return "unknown host name"
    if isinstance(e, ModuleNotFoundError) or "no module named" in low:
        return f"the database driver is not installed ({text[:120]})"
    return f"{type(e).__name__}: {text[:200]}"


def _db_fix(why: str) -> str:
    if why.startswith(("authentication", "the server asks")):
        return "fix the user / password in the URL"
    if why.startswith("database "):
        return "create the database or fix its name in the URL"
    return "start the database server or fix the URL"


def _check_database(url: str, timeout_s: float) -> str | None:
    """Connect once with a short timeout and run SELECT 1; None when it works, else why not."""
    import sqlalchemy

    from studies.storage import _with_driver

    scheme = _scheme(url)
    connect_args = {"connect_timeout": max(1, int(round(timeout_s)))} if scheme in ("postgresql", "postgres", "mysql", "mariadb") else {}
    try:
        engine = sqlalchemy.create_engine(_with_driver(url), connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    except Exception as e:  # noqa: BLE001  malformed URL, missing driver
        return db_error_reason(e, timeout_s)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as e:  # noqa: BLE001  OperationalError and friends
        return db_error_reason(e, timeout_s)
    finally:
        engine.dispose()
    return None


# --------------------------------------------------------------------------- http
def _check_http(url: str, timeout_s: float) -> str | None:
    """GET ``<url>/health`` (an MLflow tracking server answers 200 ``OK``); None when it does."""
    health = url.rstrip("/") + "/health"
    req = urllib.request.Request(health, headers={"User-Agent": "compress-suite-preflight"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            if r.status == 200:
                return None
            return f"{health} answered HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return f"{health} answered HTTP {e.code} {e.reason}: is it an MLflow tracking server?"
    except urllib.error.URLError as e:
        why = e.reason
        if isinstance(why, ConnectionRefusedError):
            return "connection refused"
        if isinstance(why, (socket.timeout, TimeoutError)):
            return f"no answer within {timeout_s:g} s"
        if isinstance(why, socket.gaierror):
            return "unknown host name"
        return f"{getattr(why, 'strerror', None) or why}"
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as e:
        return f"{e.strerror or e}"


# --------------------------------------------------------------------------- public checks
def check_tracking_uri(uri: str, timeout_s: float = 5.0, key: str = "tracking.uri") -> None:
    """Reach the MLflow tracking store at ``uri`` once, within about ``timeout_s`` seconds.

    Raises :class:`PreflightError` (one line: ``key``, the URL, why, what to do) when it cannot.
    """
    shown = redact(uri)
    scheme = _scheme(uri)
    fix = f"or set {key} to the default {DEFAULT_TRACKING}"
    if scheme in ("http", "https"):
        why = _check_http(uri, timeout_s)
        if why:
            parts = urllib.parse.urlsplit(uri)
            port = parts.port or (443 if scheme == "https" else 80)
            raise PreflightError(f"{key} = {shown!r}: no MLflow tracking server answers ({why}); start it "
                                 f"(mlflow server --host {parts.hostname} --port {port}) {fix}")
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise PreflightError(f"{key} = {shown!r} is invalid: a SQLite store is sqlite:///PATH (three slashes); {fix.removeprefix('or ')}")
        path = uri.removeprefix("sqlite:///").split("?", 1)[0]
        if path and path != ":memory:":
            why = _writable_folder(Path(path).parent, "MLflow database")
            if why:
                raise PreflightError(f"{key} = {shown!r}: {why}; fix the path {fix}")
    elif scheme == "file":
        path = Path(urllib.parse.urlsplit(uri).path if uri.startswith("file:") else uri)
        why = _writable_folder(path, "MLflow file store")
        if why:
            raise PreflightError(f"{key} = {shown!r}: {why}; fix the path {fix}")
    elif scheme in DB_SCHEMES:
        why = _check_database(uri, timeout_s)
        if why:
            raise PreflightError(f"{key} = {shown!r}: the tracking database cannot be used ({why}); {_db_fix(why)}, {fix}")


def check_storage_url(url: str, timeout_s: float = 5.0, key: str = "search.storage") -> None:
    """Reach the Optuna storage at ``url`` once (journal file, SQLite, database server) without
    creating a study or tables; :class:`PreflightError` (one line) when it cannot be used."""
    from studies.storage import check_url

    shown = redact(url)
    fix = f"or set {key} to the default {DEFAULT_STORAGE}"
    try:
        scheme = check_url(url)
    except ValueError as e:
        raise PreflightError(f"{key} = {shown!r} is invalid: {e}") from None
    if scheme == "journal":
        why = _writable_folder(Path(url.removeprefix("journal:")).parent, "Optuna journal")
    elif scheme == "sqlite":
        why = _writable_folder(Path(url.removeprefix("sqlite:///")).parent, "Optuna database")
    else:
        why = _check_database(url, timeout_s)
        if why:
            raise PreflightError(f"{key} = {shown!r}: the study storage cannot be used ({why}); {_db_fix(why)}, {fix}")
    if why:
        raise PreflightError(f"{key} = {shown!r}: {why}; fix the path {fix}")


def check_params(P, timeout_s: float = 5.0, storage: bool = False) -> None:
    """The checks a stage needs before it starts: the tracking URI when tracking is enabled, and
    the study storage when ``storage`` (the search stage)."""
    if P.tracking.enabled:
        check_tracking_uri(P.tracking.uri, timeout_s)
    if storage and hasattr(P, "search"):
        check_storage_url(P.search.storage, timeout_s)


__all__ = ["PreflightError", "check_params", "check_storage_url", "check_tracking_uri", "db_error_reason", "redact"]
