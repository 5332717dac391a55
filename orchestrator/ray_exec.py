"""Ray execution: the invocation's context every task receives, joining or starting a
cluster, how many cells fit on it at once, and the Ray Train wrapper every pretraining
(a cell, a stylizer, a search trial) goes through."""
from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray

from .experiment import ConfigError, Experiment
from .storage import Storage
from .train_job import TrainJob, WorkerEnv, resolve


@dataclass
class RunContext:
    """What every cell task needs to know about the invocation (plain, picklable)."""
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    run_dir: str
    num_workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_failures: int
    rerun: bool
    storage: str  # cluster.storage resolved: where hand-offs between processes live (storage.py)
    interrupted: dict[str, str] = field(default_factory=dict)  # cell_id -> run id left RUNNING by a dead driver
    # provenance tags every run of the invocation carries (orchestrator/provenance.py), and each
    # dataset's fingerprint by provenance.data_key, for the data tags of the runs that read it
    provenance: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)  # cells run again (--rerun-stale): no stored backbone reused

    @property
    def cache_dir(self) -> str:
        """This node's caches (decoded datasets, features, converted weights, downloads from the
        storage): rebuilt on each node, never read by another."""
        return str(Path(self.run_dir) / "cache")

    @property
    def store(self) -> Storage:
        return Storage(self.storage)

    @property
    def ray_storage(self) -> str:
        """The storage key of Ray Train's runs (and their per-epoch checkpoints), one folder per run name."""
        return f"ray/{self.experiment}"


class ClusterUnreachableError(ConfigError):
    """The Ray address to join does not answer (a stopped head, a typo, a firewall)."""


PROBE_SECONDS = 10.0  # how long a cluster address may take to accept a TCP connection


def connect(address: str | None, local_num_cpus: int | None) -> None:
    """Join ``address`` (else the cluster in $RAY_ADDRESS, as Ray's own tools do), or start a
    local Ray with ``local_num_cpus`` CPUs (default: all). Never joins a cluster nobody named:
    Ray's own default would follow the address a `ray start` left in its temp folder, which
    outlives a head stopped by a signal, and then retry the dead head for ever."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None  # its token: orchestrator/ray_auth.py
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level="ERROR")
    if address:
        if address == "auto":  # Ray's order: $RAY_ADDRESS, then the head `ray start` recorded
            env = os.environ.get("RAY_ADDRESS")
            check_reachable(env or recorded_address(),
                            "$RAY_ADDRESS" if env else f"--address auto found {ray_address_file()}, which names")
        else:
            check_reachable(address, "cluster address")
        ray.init(address=address, **kwargs)
    else:
        # the dashboard serves the state API, which Ray Train's placement-group cleaner needs to
        # free the CPUs of a run whose controller was killed (a trial stopped early by ASHA). The
        # cleaner, in a worker, finds the API by RAY_API_SERVER_ADDRESS, else by looking for Ray
        # on the machine, which fails ("multiple active Ray instances") when another Ray runs
        # there: the search then waits for ever. So the port is chosen here and exported to the
        # cluster's processes, which inherit this driver's environment.
        port = free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        ray.init(address="local", num_cpus=local_num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=port, **kwargs)


def on_driver_node() -> dict[str, Any]:
    """Ray options that keep a CPU-less task or actor (a cell's bookkeeping, the progress board)
    on the driver's node: a lost worker node then takes only the work that can be retried."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)}


def ray_address_file() -> Path:
    """Where `ray start` records the head it started (Ray's temp folder: $RAY_TMPDIR, $TMPDIR, /tmp)."""
    root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(root) / "ray" / "ray_current_cluster"


def recorded_address() -> str | None:
    try:
        return ray_address_file().read_text().strip() or None
    except OSError:
        return None  # nothing recorded: Ray itself says no cluster was found


def host_port(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a concrete address ("host:port", "ray://host:port"); None for anything else."""
    if not address or address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return (host.strip("[]") or "127.0.0.1"), int(port)


def check_reachable(address: str | None, where: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail fast, naming the address, when nothing accepts a connection there: Ray's client
    would otherwise retry an unreachable head without end."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as e:
        raise ClusterUnreachableError(
            f"{where} {address}: nothing answers at {target[0]}:{target[1]} ({e.strerror or e}). Is the "
            "cluster running? Start it (`ray start --head`), give the right --address, or leave the "
            "address out to start a local Ray.") from None


def check_shared_storage(storage: str | None, tracking_uri: str, run_dir: str | Path) -> None:
    """On a cluster of several nodes, refuse before any cell starts what only this machine can
    read: the run directory as the storage (cluster.storage left out), and an MLflow store that
    is a file here, unless both lie in the folder cluster.storage declares shared."""
    nodes = sum(1 for n in ray.nodes() if n["Alive"])
    if nodes <= 1:
        return
    where = f"this Ray cluster has {nodes} alive nodes"
    if storage is None:
        raise ConfigError(
            f"cluster.storage: {where}, but the storage is the run directory {Path(run_dir).resolve()} on this "
            "machine, which the other nodes cannot read. Set cluster.storage to an object-store URI "
            "(s3://bucket/prefix, with AWS_ENDPOINT_URL and credentials set on every node) or to a folder that "
            "every node mounts (a shared filesystem)")
    scheme = tracking_uri.split(":", 1)[0] if "://" in tracking_uri else "file"
    if scheme not in ("sqlite", "file"):
        return
    shared = Storage(storage)
    store_file = Path("/" + tracking_uri.split("://", 1)[1].lstrip("/")) if "://" in tracking_uri else Path(tracking_uri)
    if not (shared.is_local and all(p.resolve().is_relative_to(shared.root) for p in (store_file, Path(run_dir)))):
        raise ConfigError(
            f"tracking.uri: {where}, but the MLflow store {tracking_uri} is a file on this machine. Start a "
            "tracking server (`sassl ui --host 0.0.0.0 --port 5000`) and set tracking.uri: http://<its host>:5000, "
            "or put tracking.run_dir in the shared folder that cluster.storage names")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cell_cpus(exp: Experiment) -> float:
    """The CPUs one cell takes: its workers', plus one Ray Data decode task's when its stream is
    decoded by Ray Data (that task must find a CPU beside the workers, or the epoch never starts)."""
    cl, data = exp.config.cluster, exp.config.data
    decode = data.stream_decode_cpus if data.stream_decode == "ray_data" and data.loader != "memory" else 0.0
    return cl.num_workers * cl.cpus_per_worker + decode


def cell_slots(exp: Experiment) -> int:
    """How many cells fit on the cluster at once (each needs num_workers × per-worker resources)."""
    cl = exp.config.cluster
    total = ray.cluster_resources()
    fits = [math.floor(total.get("CPU", 0) / cell_cpus(exp))]
    if cl.gpus_per_worker > 0:
        fits.append(math.floor(total.get("GPU", 0) / (cl.num_workers * cl.gpus_per_worker)))
    slots = min(fits)
    if slots < 1:
        decode = cell_cpus(exp) - cl.num_workers * cl.cpus_per_worker
        extra = f" + {decode:g} CPU for Ray Data's decoding (data.stream_decode_cpus)" if decode else ""
        raise ConfigError(f"cluster: one cell needs {cl.num_workers} worker(s) × {cl.cpus_per_worker} CPU "
                          f"× {cl.gpus_per_worker} GPU{extra} but the Ray cluster has {dict(total)}")
    return min(slots, cl.max_concurrent_cells or slots)


# A resume needs only the latest checkpoint; the one before it is kept in case the latest is
# unreadable. Ray keeps every checkpoint otherwise: 25 epochs x 39 MB per cell filled 11 GB for
# SASSL table 3 at the cpu profile, and a paper profile (200 epochs, ResNet-50) would fill a disk.
CHECKPOINTS_KEPT = 2


PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


@contextlib.contextmanager
def lean_train_settings():
    """Ray Train's preemption watcher (an actor per run that listens for a node being drained)
    is off, for the run started inside this block, on a one-node cluster, where no node can go
    while the others carry on; a user's own RAY_TRAIN_ENABLE_PREEMPTION_WATCHER wins. Each such
    actor costs a Python process that imports Ray Train (about 3-5 s of CPU here, per cell).
    The setting is undone afterwards, so a node that joins later gets the watcher again."""
    if PREEMPTION_WATCHER_ENV in os.environ or sum(n["Alive"] for n in ray.nodes()) > 1:
        yield
        return
    os.environ[PREEMPTION_WATCHER_ENV] = "0"  # read when the run's controller is created
    try:
        yield
    finally:
        os.environ.pop(PREEMPTION_WATCHER_ENV, None)


@functools.cache
def lean_trainer_class():
    """TorchTrainer without the Ray Data plumbing when a run is given no Ray Datasets: Ray Train
    starts a DatasetManager actor for every run otherwise, datasets or not (about 2-3 s of CPU
    each). The override uses a private hook of Ray Train 2.60 (the pinned version); a test
    checks that the hook is still there and drops only that callback."""
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks import DatasetsCallback

    class LeanTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            if self.datasets:
                return callbacks
            return [cb for cb in callbacks if not isinstance(cb, DatasetsCallback)]
    return LeanTorchTrainer


def worker_loop(config: dict[str, Any]) -> None:
    """What every Ray Train worker runs: the loop its job names (orchestrator/train_worker.py).
    Only the worker imports that module (PyTorch, the workloads, MLflow: ~10 s of CPU on a
    2-core machine), not the cell task or trial that calls fit_trainer."""
    job = config["job"]
    resolve(job.loop)(job)


def fit_trainer(job: TrainJob, ctx: RunContext, *, name: str, num_workers: int,
                callbacks: list | None = None) -> None:
    """One Ray Train run of ``job`` (a cell's pretraining, a trial's, a stylizer's) with the
    invocation's per-worker resources, retries and storage (checkpoints under the storage key
    ctx.ray_storage / name)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    use_gpu = ctx.gpus_per_worker > 0
    resources = {"CPU": ctx.cpus_per_worker, **({"GPU": ctx.gpus_per_worker} if use_gpu else {})}
    env = WorkerEnv(tracking_uri=ctx.tracking_uri, cache_dir=ctx.cache_dir, storage=ctx.storage,
                    cpus_per_worker=ctx.cpus_per_worker, use_gpu=use_gpu)
    with lean_train_settings():
        lean_trainer_class()(
            worker_loop,
            train_loop_config={"job": replace(job, env=env)},
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
            run_config=RunConfig(name=name, **ctx.store.ray_train(ctx.ray_storage), callbacks=callbacks,
                                 failure_config=FailureConfig(max_failures=ctx.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT))).fit()
