"""The loops Ray Train workers run: each sets up (threads, device, the checkpoint to resume
from), fetches its input files from the storage, calls one data-plane entry (workloads/cell.py)
and stores what it trained. RayTrainCallback adapts the workload's Callback to Ray Train
(per-epoch checkpoints, resume), the progress board and MLflow (rank 0 only)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import ray.train
import torch

from workloads.callbacks import Callback
from workloads.cell import train_sipl_cell, train_ssl_cell, train_stylizer_cell
from workloads.machine import machine_params
from workloads.spec import CellSpec
from workloads.stylize.model import save_stylizer

from . import tracking
from .pipelines import METHOD_FILE
from .ray_data_stream import RayDataShardStream
from .storage import Storage
from .train_job import TrainJob

CHECKPOINT_FILE = "state.pt"


RESUMED_METRIC = "resumed_from_epoch"  # one entry per restart (worker retry or a new invocation)


class RayTrainCallback(Callback):
    def __init__(self, job: TrainJob, resume: dict[str, Any] | None = None):
        self.rank = ray.train.get_context().get_world_rank()
        self.cell_id, self.board, self.epochs, self.run_id = job.name, job.board, job.epochs, job.run_id
        self.objective = job.objective_key  # a search trial: also log it as 'objective'
        self.mlflow = tracking.client(job.env.tracking_uri) if self.rank == 0 else None
        self.resumed = resume is not None
        self.logged: dict[str, int] = {}  # metric -> last step already in MLflow (only after a resume)
        if self.mlflow is not None:  # which CPU kernels made these numbers (workloads/machine.py)
            tracking.log_params_once(self.mlflow, self.run_id, machine_params("machine.train"))
        if self.mlflow is not None and resume is not None:
            epoch = int(resume.get("epoch", resume.get("step", 0)))  # the stylizer checkpoints by step
            tracking.log_metrics(self.mlflow, self.run_id, {RESUMED_METRIC: epoch}, epoch)

    def _not_logged_yet(self, metrics: dict[str, float], epoch: int) -> dict[str, float]:
        """After a resume, the epochs between the checkpoint and the failure were logged by the
        attempt that died: they are trained again but not logged twice (the first value stays)."""
        if not self.resumed:
            return metrics
        for k in metrics.keys() - self.logged.keys():
            history = self.mlflow.get_metric_history(self.run_id, k)
            self.logged[k] = max((m.step for m in history), default=0)
        return {k: v for k, v in metrics.items() if epoch > self.logged[k]}

    def on_progress(self, stage, epoch, step, steps, metrics):
        if self.rank == 0 and self.board is not None:
            self.board.update.remote(self.cell_id, {"status": stage, "epoch": epoch, "epochs": self.epochs,
                                                    "step": step, "steps": steps, **metrics})

    def on_epoch_end(self, stage, epoch, metrics, state):
        checkpoint = None
        with tempfile.TemporaryDirectory() as tmp:
            if self.rank == 0:
                logged = {f"{stage}/{k}": v for k, v in metrics.items()}
                if self.objective in metrics:
                    logged["objective"] = metrics[self.objective]
                logged = self._not_logged_yet(logged, epoch)
                if logged:
                    tracking.log_metrics(self.mlflow, self.run_id, logged, epoch)
                torch.save(state(), os.path.join(tmp, CHECKPOINT_FILE))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            # every rank must call report (it is a collective); only rank 0 carries the state
            ray.train.report({"epoch": epoch, **metrics}, checkpoint=checkpoint)

    def on_artifact(self, path, folder=None):
        if self.rank == 0:
            tracking.retry(self.mlflow.log_artifact, self.run_id, path, folder)


def _setup(job: TrainJob) -> tuple[torch.device, dict[str, Any] | None]:
    """Threads, device, and the state to resume from (a retried worker or an interrupted run)."""
    torch.set_num_threads(job.env.threads)
    use_gpu = torch.cuda.is_available() and job.env.use_gpu
    device = ray.train.torch.get_device() if use_gpu else torch.device("cpu")
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    return device, resume


def _fetch(job: TrainJob, key: str | None) -> Path | None:
    """A storage key's file in this node's cache (None for no key)."""
    return Storage(job.env.storage).fetch(key, job.env.cache_dir) if key else None


def _store(job: TrainJob, files: list[tuple[str, Any]], save, callback: Callback, folder: str) -> None:
    """Rank 0's outputs into the storage, [(key, object)] written with ``save(object, path)``;
    the last key marks a finished training (a rerun reuses it), so it is stored last, and logged
    on the run as an artifact in ``folder``."""
    store = Storage(job.env.storage)
    with tempfile.TemporaryDirectory() as tmp:
        for key, obj in files:
            local = Path(tmp) / Path(key).name
            save(obj, local)
            store.put(local, key)
        callback.on_artifact(str(local), folder)


def ray_data_decoder(spec: CellSpec):
    """data.stream_decode: ray_data, the one decoder the data plane cannot start: Ray Data tasks of
    data.stream_decode_cpus CPUs each (read when a stream is handed over, not before)."""
    return lambda stream: RayDataShardStream.like(stream, decode_cpus=spec.data.stream_decode_cpus)


def ssl_loop(job: TrainJob) -> None:
    """An SSL method's pretraining (DDP across the run's workers); rank 0 saves the method and
    its backbone."""
    device, resume = _setup(job)
    ctx = ray.train.get_context()
    use_gpu = device.type == "cuda"

    def wrap(model):
        if ctx.get_world_size() > 1:
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_gpu else None)
        return model

    callback = RayTrainCallback(job, resume)
    model = train_ssl_cell(job.spec, cache_dir=job.env.cache_dir, device=device, callback=callback, resume=resume,
                           rank=ctx.get_world_rank(), world=ctx.get_world_size(), threads=job.env.threads,
                           wrap_model=wrap, stylizer=_fetch(job, job.stylizer_key),
                           style_bank=_fetch(job, job.style_bank_key), monitor=job.monitor,
                           decode_stream=ray_data_decoder(job.spec))
    if ctx.get_world_rank() == 0:
        key = job.backbone_key
        # the whole method (projector etc.: the sensitivity analysis), then the backbone
        _store(job, [(f"{key.rsplit('/', 1)[0]}/{METHOD_FILE}", model.state_dict()),
                     (key, model.backbone.state_dict())], torch.save, callback, "model")


def stylizer_loop(job: TrainJob) -> None:
    """Train a style-transfer network once; rank 0 saves it (one worker is the sensible scale)."""
    device, resume = _setup(job)
    callback = RayTrainCallback(job, resume)
    net = train_stylizer_cell(job.spec, cache_dir=job.env.cache_dir, device=device, callback=callback, resume=resume)
    if ray.train.get_context().get_world_rank() == 0:
        _store(job, [(job.stylizer_key, net.cpu())], save_stylizer, callback, "stylizer")


def sipl_loop(job: TrainJob) -> None:
    """SIPL's pretext training (one worker); it saves the encoder the evaluation uses."""
    device, resume = _setup(job)
    callback = RayTrainCallback(job, resume)
    model = train_sipl_cell(job.spec, cache_dir=job.env.cache_dir, device=device, callback=callback, resume=resume,
                            threads=job.env.threads, monitor=job.monitor)
    # the paper reports the best validation accuracy over epochs; MLflow has every epoch (resumed or not)
    history = callback.mlflow.get_metric_history(callback.run_id, "sipl/val_pretext_acc")
    if history:
        tracking.log_metrics(callback.mlflow, callback.run_id, {"sipl/best_val_pretext_acc": max(m.value for m in history)})
    _store(job, [(job.backbone_key, model.encoder.state_dict())], torch.save, callback, "model")
