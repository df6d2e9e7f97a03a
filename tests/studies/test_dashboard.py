"""`python -m studies.dashboard`: optuna-dashboard on the project's study storage."""
from __future__ import annotations

import io
import json

import optuna
import pytest
import yaml

from studies import dashboard
from studies.storage import StorageError, open_storage


def _get(app, path: str) -> tuple[str, bytes]:
    """One GET through the WSGI application (no socket)."""
    from wsgiref.util import setup_testing_defaults

    env: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO(b"")}
    setup_testing_defaults(env)
    status: list[str] = []
    body = b"".join(app(env, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def _study(url: str, name: str, n: int) -> None:
    study = optuna.create_study(study_name=name, storage=open_storage(url), directions=["maximize", "minimize"])
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(params={"bits": i + 2}, values=[0.9 + i / 100, 1000.0 - i],
                                                  distributions={"bits": optuna.distributions.IntDistribution(2, 8)}))


def test_dashboard_lists_the_default_journal_studies(tmp_path):
    """The default storage of params.yaml (a journal path relative to the project) is what the dashboard serves."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"search": {}}))
    url = dashboard.resolve_storage(tmp_path / "params.yaml", None)
    assert url == f"journal:{tmp_path / 'search' / 'optuna.journal'}"
    _study(url, "cs-bits-abc", 3)
    status, body = _get(dashboard.app(url), "/api/studies")
    assert status.startswith("200")
    studies = json.loads(body)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["cs-bits-abc"]
    sid = studies[0]["study_id"]
    status, body = _get(dashboard.app(url), f"/api/studies/{sid}")
    assert status.startswith("200") and len(json.loads(body)["trials"]) == 3


def test_explicit_storage_wins(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    assert dashboard.resolve_storage("no-such-params.yaml", url) == url
    _study(url, "s", 1)
    status, body = _get(dashboard.app(url), "/api/studies")
    assert json.loads(body)["study_summaries"][0]["study_name"] == "s"


def test_missing_journal_is_one_line_and_creates_nothing(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"search": {}}))
    rc = dashboard.main(["--params", str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "search.storage" in err and "dvc repro search" in err
    assert not (tmp_path / "search").exists()
    with pytest.raises(StorageError, match="--storage"):
        dashboard.open_existing(f"journal:{tmp_path / 'x.journal'}", "--storage")


def test_bad_url_is_one_line(capsys):
    assert dashboard.main(["--storage", "ftp://nowhere/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--storage" in err and "unsupported storage URL" in err
