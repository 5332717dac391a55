"""`sassl ui`: a real MLflow server on 127.0.0.1, used over HTTP and through headless Chromium."""
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from orchestrator import tracking
from orchestrator.ui import experiment_url

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-dev-shm-usage", "--window-size=1400,900", "--virtual-time-budget=20000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "ui", "--run-dir", str(tmp_path / "runs"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                break
        except OSError:
            time.sleep(1)
    else:
        pytest.fail("mlflow server did not answer /health in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def rest(url: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


def log_cells(url: str, tmp_path) -> str:
    c = MlflowClient(url)
    eid = tracking.get_or_create_experiment(c, "ui-e2e", None)  # as sassl makes one (its kind tag)
    for seed in range(3):
        run = c.create_run(eid, run_name=f"in-batch style · seed {seed}", tags={"sassl.role": "cell"})
        c.log_metric(run.info.run_id, "linear/cifar10/top1", 30.0 + seed)
        (tmp_path / "cell_config.yaml").write_text(f"seed: {seed}\n")
        c.log_artifact(run.info.run_id, str(tmp_path / "cell_config.yaml"))
        c.set_terminated(run.info.run_id)
    return eid


def test_log_over_http_and_read_back_over_rest(server, tmp_path):
    eid = log_cells(server, tmp_path)
    assert rest(server, "experiments/get-by-name?experiment_name=ui-e2e")["experiment"]["experiment_id"] == eid
    runs = rest(server, "runs/search", {"experiment_ids": [eid], "filter": "tags.`sassl.role` = 'cell'"})["runs"]
    assert sorted(r["data"]["metrics"][0]["value"] for r in runs) == [30.0, 31.0, 32.0]
    assert {r["info"]["status"] for r in runs} == {"FINISHED"}
    # artifacts went through the server into <run_dir>/artifacts (no shared filesystem needed)
    stored = list((tmp_path / "runs" / "artifacts").rglob("cell_config.yaml"))
    assert len(stored) == 3
    listed = rest(server, f"artifacts/list?run_id={runs[0]['info']['run_id']}")
    assert [f["path"] for f in listed["files"]] == ["cell_config.yaml"]


def test_ui_lists_the_runs_in_headless_chromium(server, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (scripts/test.sh installs it when run as root)")
    eid = log_cells(server, tmp_path)
    # the experiment's address as sassl prints it: on its runs, not MLflow 3's GenAI overview
    # (traces, token usage), where its bare address lands
    page = experiment_url(server, eid)
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, "--dump-dom", page], capture_output=True, text=True,
                         timeout=120).stdout
    for seed in range(3):
        assert f"in-batch style · seed {seed}" in dom
    shot = tmp_path / "experiment_page.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    from PIL import Image
    img = Image.open(shot).convert("L")
    assert img.size == (1400, 900)
    lo, hi = img.getextrema()
    assert hi - lo > 100  # a rendered page, not a blank one
