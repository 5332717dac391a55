"""Where a cell's configuration is read while its training runs: every key (the dicts of the
code before the typed spec) or field (workloads/spec.py) read, by file and line, through the
three Ray Train loops (an SSL cell with SASSL's stylizer and a search's monitor, a SIPL cell
with its monitor, a stylizer's training), with Ray Train's context stubbed (rank 0 of 1).

Prints: reads, distinct read sites (file:line), files that read the configuration, and in
the order the reads happen, how often it climbs back from workloads/ into orchestrator/ and
how often it returns to a file it had left. A spec's own methods reading its fields (in
workloads/spec.py) are not counted: that is the object reading itself.

    .venv/bin/python benchmarks/config_flow.py            # this checkout
    # the code before the spec (commit 8f04c22): copy this file into a checkout of it, and there
    PYTHONPATH=. .venv/bin/python benchmarks/config_flow.py --before
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import types
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1]) + "/"
READS: list[tuple[str, int, str]] = []

RAW = {"name": "flow", "data": {"image_size": 32, "limit": 64}, "backbone": {"width": 0.125},
       "augmentation": {"style": {"enabled": True, "source": "in_batch"}},
       "stylizer": {"pretrained": None, "steps": 2, "batch_size": 4},
       "optim": {"epochs": 1, "batch_size": 32}, "seeds": [0],
       "evaluation": {"linear_probe": {"epochs": 1}}}
SSL = {"name": "moco_v2", "proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32}
SIPL = {"name": "sipl", "embed_dim": 16, "head_hidden": 16, "downstream": {"hidden": 16, "epochs": 1}}
MONITOR = {"train_size": 20, "lr": 0.1, "epochs": 1}


def _site():
    f = sys._getframe(2)
    while f is not None and (not f.f_code.co_filename.startswith(ROOT) or "/.venv/" in f.f_code.co_filename
                             or f.f_code.co_filename == __file__):
        f = f.f_back
    return (f.f_code.co_filename[len(ROOT):], f.f_lineno) if f else None


def _note(path: str) -> None:
    site = _site()
    if site and site[0] != "workloads/spec.py":
        READS.append((*site, path))


class RecordingDict(dict):
    """A config section that notes each key read."""
    path = ""

    def __getitem__(self, k):
        _note(f"{self.path}.{k}")
        return super().__getitem__(k)

    def get(self, k, default=None):
        _note(f"{self.path}.{k}")
        return super().get(k, default)


def recording(obj, path=""):
    if isinstance(obj, dict):
        d = RecordingDict({k: recording(v, f"{path}.{k}".lstrip(".")) for k, v in obj.items()})
        d.path = path
        return d
    if isinstance(obj, list):
        return [recording(v, path) for v in obj]
    return obj


def record_spec_reads() -> None:
    """Every spec class notes its field reads, but the value objects the augmentation and patch
    kernels take (ViewConfig, PatchGeometry, SiplAugment): the old code built those from the
    dicts as well, so neither side counts the kernels' reads."""
    import workloads.spec as S
    for name, cls in vars(S).items():
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == S.__name__) or \
                name in ("ViewConfig", "PatchGeometry", "SiplAugment"):
            continue
        fields = {f.name for f in dataclasses.fields(cls)}
        original = cls.__getattribute__

        def getattribute(self, attr, _fields=fields, _original=original, _name=name):
            if attr in _fields:
                _note(f"{_name}.{attr}")
            return _original(self, attr)
        cls.__getattribute__ = getattribute


def summary() -> dict:
    files: list[str] = []
    for f, _, _ in READS:
        if not files or files[-1] != f:
            files.append(f)
    return {"reads": len(READS), "read sites": len({(f, n) for f, n, _ in READS}), "files": len(set(files)),
            "climbs back": sum(a.startswith("workloads/") and b.startswith("orchestrator/")
                               for a, b in zip(files, files[1:])),
            "returns": sum(f in files[:i] for i, f in enumerate(files)), "order": files}


def _stub_ray_train() -> None:
    import ray.train
    ctx = types.SimpleNamespace(get_world_rank=lambda: 0, get_world_size=lambda: 1)
    ray.train.get_context = lambda: ctx
    ray.train.get_checkpoint = lambda: None
    ray.train.report = lambda *a, **k: None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", action="store_true", help="drive the loops as the code before the spec took them")
    args = ap.parse_args()
    from orchestrator import tracking
    from orchestrator.experiment import build_experiment
    from orchestrator.ray_exec import worker_loop
    from orchestrator.storage import Storage
    from workloads.stylize.model import save_stylizer
    from workloads.stylize.train import build_stylizer

    tmp = Path(tempfile.mkdtemp())
    (tmp / "cache").mkdir()
    weights = Path("~/.cache/sassl/weights").expanduser()  # the converted HED trunk, if it is here
    if weights.is_dir():
        (tmp / "cache" / "weights").symlink_to(weights)
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = tracking.client(uri)
    exp_id = client.create_experiment("flow")
    store = Storage(str(tmp / "store"))
    ssl = build_experiment({**RAW, "method": SSL}).cells[0]
    sipl = build_experiment({**RAW, "method": SIPL, "optim": {**RAW["optim"], "optimizer": "adam"},
                             "augmentation": {}}).cells[0]
    _stub_ray_train()
    env = dict(tracking_uri=uri, cache_dir=str(tmp / "cache"), storage=str(tmp / "store"), cpus_per_worker=2,
               use_gpu=False)

    def run() -> str:
        return client.create_run(exp_id).info.run_id

    if args.before:  # the loops took one flat dict (loop_cfg), the cell's config inside it
        net = build_stylizer(ssl.config["stylizer"])
        save_stylizer(net, tmp / "st.pt")
        store.put(tmp / "st.pt", "stylizers/x.pt")
        base = {**env, "loop": "train_loop", "board": None, "epochs": 1}
        worker_loop({**base, "cell": recording(ssl.config), "cell_id": "ssl", "run_id": run(),
                     "backbone_key": "b/ssl/backbone.pt", "stylizer_key": "stylizers/x.pt", "monitor": MONITOR})
        worker_loop({**base, "cell": recording(sipl.config), "cell_id": "sipl", "run_id": run(),
                     "backbone_key": "b/sipl/backbone.pt", "monitor": MONITOR})
        data = ssl.config["data"]
        worker_loop({**base, "loop": "stylizer_loop", "stylizer": recording(ssl.config["stylizer"], "stylizer"),
                     "data": recording({"loader": data["loader"], "memory_budget_gb": data["memory_budget_gb"]},
                                       "data"), "cell_id": "stylizer", "run_id": run(),
                     "stylizer_key": "stylizers/y.pt"})
    else:
        from orchestrator.pipelines import pipeline
        from orchestrator.train_job import STYLIZER_LOOP, TrainJob, WorkerEnv
        from workloads.spec import MonitorSpec
        net = build_stylizer(ssl.spec.stylizer)
        save_stylizer(net, tmp / "st.pt")
        store.put(tmp / "st.pt", "stylizers/x.pt")
        record_spec_reads()
        worker = WorkerEnv(**env)
        monitor = MonitorSpec(**MONITOR)
        worker_loop({"job": TrainJob(pipeline(ssl.config).train, ssl.spec, "ssl", run(), 1, env=worker,
                                     backbone_key="b/ssl/backbone.pt", stylizer_key="stylizers/x.pt",
                                     monitor=monitor)})
        worker_loop({"job": TrainJob(pipeline(sipl.config).train, sipl.spec, "sipl", run(), 1, env=worker,
                                     backbone_key="b/sipl/backbone.pt", monitor=monitor)})
        worker_loop({"job": TrainJob(STYLIZER_LOOP, ssl.spec, "stylizer", run(), 1, env=worker,
                                     stylizer_key="stylizers/y.pt")})
    s = summary()
    print(", ".join(f"{k}: {v}" for k, v in s.items() if k != "order"))
    print("files in the order they read it:", " -> ".join(s["order"]))


if __name__ == "__main__":
    main()
