"""Open the project's Optuna studies in optuna-dashboard, beside the MLflow UI.

    python -m studies.dashboard [--params params.yaml] [--storage URL] [--host 127.0.0.1] [--port 8080]

The storage defaults to ``search.storage`` of the params file (``journal:search/optuna.journal``
after ``dvc repro``), opened exactly as the search stage and the study workers open it
(:func:`studies.storage.open_storage`), so journal files, SQLite and PostgreSQL all work and a bad
URL is one line.  A journal file that does not exist yet is an error, not a new empty study file.
The server listens on loopback unless ``--host`` says otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from studies.storage import StorageError, _scheme, open_storage


def resolve_storage(params: str | Path, storage: str | None) -> str:
    """``storage`` or the params file's ``search.storage`` (relative journal paths: from the params folder)."""
    if storage:
        return storage
    from compress.config import load_params

    url = load_params(params).search.storage
    if _scheme(url) == "journal":
        path = Path(url.removeprefix("journal:"))
        if not path.is_absolute():
            url = f"journal:{Path(params).resolve().parent / path}"
    return url


def open_existing(url: str, key: str = "search.storage"):
    """The storage at ``url``; a journal file that is not there is a one-line error naming the fix."""
    if _scheme(url) == "journal" and not Path(url.removeprefix("journal:")).is_file():
        raise StorageError(f"{key} = {url!r}: no study journal there yet; run `dvc repro search` "
                           "(or a study worker) first, or pass --storage")
    return open_storage(url, key=key)


def app(url: str):
    """optuna-dashboard's WSGI application on the storage at ``url`` (what the server runs)."""
    import optuna_dashboard

    return optuna_dashboard.wsgi(open_existing(url))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.dashboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="params file whose search.storage is opened")
    ap.add_argument("--storage", help="storage URL instead of search.storage: journal:PATH, sqlite:///PATH, postgresql://...")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    a = ap.parse_args(argv)
    from compress.config import ConfigError

    try:
        url = resolve_storage(a.params, a.storage)
        storage = open_existing(url, "--storage" if a.storage else "search.storage")
    except (ConfigError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import optuna_dashboard

    print(f"optuna-dashboard on {url} at http://{a.host}:{a.port}/dashboard (Ctrl-C stops it)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        optuna_dashboard.run_server(storage, host=a.host, port=a.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
