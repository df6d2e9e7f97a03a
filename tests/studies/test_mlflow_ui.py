"""The MLflow UI shows a study's runs and the accuracy / size / latency metrics.

Starts ``mlflow ui`` on 127.0.0.1 against a tracking DB filled by a real (tiny) bits study, opens
the experiment's classic runs table (``#/experiments/<id>/runs``: the study's parent run, trials
nested under it) and the compare view of all its runs in headless Chromium (Debian's
``chromium``, driven by Playwright; never ``playwright install``), and saves screenshots under
test-artifacts/.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed: apt-get install -y chromium (done by .ci/run)"),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_lists_trial_runs_with_metric_columns(tmp_path, tiny_project):
    pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed: pip install -e '.[dev]'")
    import mlflow
    from playwright.sync_api import sync_playwright

    from compress.config import load_params
    from studies import bits as bits_study
    from studies.common import make_tracker, run_study

    # 1. a real study logged to a fresh tracking DB
    P = load_params(tiny_project)
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    P.tracking.uri, P.tracking.experiment = db, "ui-check"
    P.search.storage = f"journal:{tmp_path / 'j.journal'}"
    with contextlib.chdir(tiny_project.parent):  # the pipeline's files
        spec, meta = bits_study.build_spec(P)
    run_study(spec, P.search.storage, "ui-bits", 4, tracker=make_tracker(P, meta, "bits"), progress=False)
    mlflow.set_tracking_uri(db)
    exp_id = mlflow.get_experiment_by_name("ui-check").experiment_id

    # 2. the UI server
    port = _port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": db}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", db, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"mlflow ui exited: {server.stdout.read()[-500:]}")
                time.sleep(0.5)
        # 3. the classic runs table of the experiment, in headless Chromium
        ARTIFACTS.mkdir(exist_ok=True)
        import json
        import urllib.parse

        runs = mlflow.search_runs(experiment_ids=[exp_id])
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1800, "height": 1000})
            # the classic runs table: the study's parent run, with its trials nested under it
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{exp_id}/runs", timeout=120_000)
            page.get_by_text(f"{len(runs)} matching runs").wait_for(timeout=120_000)  # rows rendered
            page.get_by_text("ui-bits", exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_runs.png"), full_page=True)
            # the compare view of all runs: trial names side by side, one row per metric
            q = (f"runs={urllib.parse.quote(json.dumps(runs['run_id'].tolist()))}"
                 f"&experiments={urllib.parse.quote(json.dumps([exp_id]))}")
            page.goto(f"http://127.0.0.1:{port}/#/compare-runs?{q}", timeout=120_000)
            page.get_by_text("latency_ms_b256").first.wait_for(timeout=120_000)
            text = page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_compare.png"), full_page=True)
            browser.close()
        for t in range(4):
            assert f"ui-bits-t{t:03d}" in text
        for name in ("accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256", "avg_weight_bits"):
            assert name in text, f"metric {name} not shown"
        assert (ARTIFACTS / "mlflow_ui_runs.png").stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(30)
