"""An unusable tracking server or study storage stops a stage in one line, within seconds,
before any work (stages/preflight.py, wired into stages.common.load_params_or_exit).

Without the check, ``tracking.uri: http://127.0.0.1:9`` cost 255 s of MLflow retries and a
traceback; a PostgreSQL URL with a wrong password a traceback after MLflow's engine retries.
"""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from stages.preflight import PreflightError, check_storage_url, check_tracking_uri
from studies.storage import StorageError, open_storage
from tests.conftest import ROOT
from tests.studies.pg import PgServer, free_port, pg_bin

LIMIT_S = 10.0


def _one_line_error(fn, *args, **kw) -> tuple[str, float]:
    t0 = time.perf_counter()
    with pytest.raises((PreflightError, StorageError)) as e:
        fn(*args, **kw)
    dt = time.perf_counter() - t0
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert dt < LIMIT_S, (dt, msg)
    return msg, dt


@pytest.fixture
def http_server():
    """A local HTTP server answering ``/health`` with the status given to it (200 = MLflow-like)."""
    servers = []

    def start(status: int) -> str:
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status if self.path == "/health" else 404)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *a):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}"

    yield start
    for s in servers:
        s.shutdown()


def test_unreachable_http_server_is_one_line_naming_key_url_and_fix():
    port = free_port()  # nothing listens there
    msg, _ = _one_line_error(check_tracking_uri, f"http://127.0.0.1:{port}")
    assert msg == (f"tracking.uri = 'http://127.0.0.1:{port}': no MLflow tracking server answers (connection refused); "
                   f"start it (mlflow server --host 127.0.0.1 --port {port}) or set tracking.uri to the default "
                   "sqlite:///mlflow.db")


def test_a_server_that_never_answers_costs_only_the_timeout():
    import socket

    with socket.socket() as s:  # accepts connections (kernel backlog) but never replies
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        msg, dt = _one_line_error(check_tracking_uri, url, timeout_s=1)
    assert "no MLflow tracking server answers (no answer within 1 s)" in msg and dt < 3, (dt, msg)


def test_http_server_that_is_not_mlflow_and_one_that_is(http_server):
    check_tracking_uri(http_server(200))  # answers /health: passes
    url = http_server(404)
    msg, _ = _one_line_error(check_tracking_uri, url)
    assert msg.startswith(f"tracking.uri = '{url}': no MLflow tracking server answers ({url}/health answered HTTP 404")
    assert "is it an MLflow tracking server?" in msg


def test_local_stores_need_a_writable_folder(tmp_path):
    check_tracking_uri(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")
    check_tracking_uri(str(tmp_path / "mlruns"))
    check_storage_url(f"journal:{tmp_path / 'search' / 'optuna.journal'}")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    msg, _ = _one_line_error(check_tracking_uri, f"sqlite:///{blocker / 'mlflow.db'}")
    assert msg.startswith(f"tracking.uri = 'sqlite:///{blocker / 'mlflow.db'}': cannot create the folder {blocker}")
    assert msg.endswith("or set tracking.uri to the default sqlite:///mlflow.db")
    msg, _ = _one_line_error(check_tracking_uri, f"file://{blocker / 'mlruns'}")
    assert "cannot create the folder" in msg and "MLflow file store" in msg
    msg, _ = _one_line_error(check_storage_url, f"journal:{blocker / 'optuna.journal'}")
    assert msg.startswith("search.storage = ") and msg.endswith("or set search.storage to the default journal:search/optuna.journal")
    msg, _ = _one_line_error(check_storage_url, "redis://x")
    assert msg.startswith("search.storage = 'redis://x' is invalid: unsupported storage URL")


def test_database_without_server_is_one_line():
    port = free_port()
    url = f"postgresql://user:s3cret@127.0.0.1:{port}/db"
    msg, _ = _one_line_error(check_tracking_uri, url)
    assert "s3cret" not in msg and f"'postgresql://user:***@127.0.0.1:{port}/db'" in msg
    assert "connection refused" in msg
    msg, _ = _one_line_error(check_storage_url, url)
    assert msg.startswith("search.storage = ") and "connection refused" in msg


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL server binaries not installed: apt-get install -y postgresql "
                    "(done by .ci/run)")
def test_postgresql_wrong_password_is_one_line_for_tracking_and_storage():
    server = PgServer(password="right-pw")
    try:
        good = server.start()
        bad = good.replace("right-pw", "wrong-pw")
        check_tracking_uri(good)
        check_storage_url(good)
        for fn, key in ((check_tracking_uri, "tracking.uri"), (check_storage_url, "search.storage")):
            msg, dt = _one_line_error(fn, bad)
            assert msg.startswith(f"{key} = 'postgresql://search:***@127.0.0.1:{server.port}/postgres': ")
            assert "authentication failed for user search (wrong password?)" in msg and "wrong-pw" not in msg
        # the search runner's own connection (Optuna RDB storage) says the same in one line
        msg, _ = _one_line_error(open_storage, bad)
        assert msg == (f"search.storage = 'postgresql://search:***@127.0.0.1:{server.port}/postgres': storage cannot be "
                       "used (authentication failed for user search (wrong password?))")
    finally:
        server.stop()


def _stage(tmp_path, tracking: dict, stage: str = "stages.calibrate") -> tuple[subprocess.CompletedProcess, float]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tracking"] = {**params["tracking"], **tracking}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", stage, "--params", str(tmp_path / "params.yaml")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    return p, time.perf_counter() - t0


def test_a_stage_stops_before_any_work_when_tracking_is_unreachable(tmp_path):
    """The issue's case: python -m stages.calibrate with tracking.uri http://127.0.0.1:9."""
    p, wall = _stage(tmp_path, {"uri": "http://127.0.0.1:9"})
    assert p.returncode == 2, p.stderr[-2000:]
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert err == [f"error: {tmp_path / 'params.yaml'}: tracking.uri = 'http://127.0.0.1:9': no MLflow tracking server "
                   "answers (connection refused); start it (mlflow server --host 127.0.0.1 --port 9) or set tracking.uri "
                   "to the default sqlite:///mlflow.db"], p.stderr[-2000:]
    assert not (tmp_path / "calibration").exists() and not (tmp_path / "metrics").exists()  # no work was done
    # python start-up and imports included; the check itself takes milliseconds (see the tests above)
    assert wall < 60, wall
