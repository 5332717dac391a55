"""The function every Ray Train worker runs for a cell's pretraining.

It adapts the workload's Callback to Ray Train (per-epoch checkpoints, resume),
the progress board and MLflow (rank 0 only)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import ray.train
import torch

from workloads.backends import configure_backends
from workloads.callbacks import Callback
from workloads.data.device_decode import DeviceDecodeStream
from workloads.data.prepare import pretrain_data
from workloads.data.stream import ShardStream
from workloads.machine import machine_params
from workloads.pretrain import pretrain
from workloads.stylize.model import load_stylizer, save_stylizer
from workloads.stylize.train import stylizer_arch, style_pool, train_stylizer

from . import tracking
from .pipelines import METHOD_FILE, pipeline
from .ray_data_stream import RayDataShardStream
from .storage import Storage

CHECKPOINT_FILE = "state.pt"


RESUMED_METRIC = "resumed_from_epoch"  # one entry per restart (worker retry or a new invocation)


class RayTrainCallback(Callback):
    def __init__(self, loop_cfg: dict[str, Any], resume: dict[str, Any] | None = None):
        self.rank = ray.train.get_context().get_world_rank()
        self.cell_id = loop_cfg["cell_id"]
        self.board = loop_cfg.get("board")
        self.epochs = loop_cfg["epochs"]
        self.run_id = loop_cfg["run_id"]
        self.objective = loop_cfg.get("objective_key")  # a search trial: also log it as 'objective'
        self.mlflow = tracking.client(loop_cfg["tracking_uri"]) if self.rank == 0 else None
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


def _setup(loop_cfg: dict[str, Any]) -> tuple[torch.device, bool, dict[str, Any] | None]:
    """Threads, device, and the state to resume from (a retried worker or an interrupted run)."""
    torch.set_num_threads(max(1, int(loop_cfg["cpus_per_worker"])))
    use_gpu = torch.cuda.is_available() and loop_cfg["use_gpu"]
    device = ray.train.torch.get_device() if use_gpu else torch.device("cpu")
    # before the first kernel: cuBLAS reads its workspace setting when it makes its handle
    configure_backends(device, deterministic=bool(loop_cfg.get("cell", {}).get("optim", {}).get("deterministic")))
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    return device, use_gpu, resume


def _store(loop_cfg: dict[str, Any], files: list[tuple[str, Any]], save, callback: Callback,
           folder: str) -> None:
    """Rank 0's outputs into the storage, [(key, object)] written with ``save(object, path)``;
    the last key marks a finished training (a rerun reuses it), so it is stored last, and logged
    on the run as an artifact in ``folder``."""
    store = Storage(loop_cfg["storage"])
    with tempfile.TemporaryDirectory() as tmp:
        for key, obj in files:
            local = Path(tmp) / Path(key).name
            save(obj, local)
            store.put(local, key)
        callback.on_artifact(str(local), folder)


def with_decoder(images: "torch.Tensor | ShardStream", data: dict[str, Any], device: torch.device):
    """A stream decoded where data.stream_decode says (in-memory images are returned as they are)."""
    decode = data.get("stream_decode", "worker")
    if not isinstance(images, ShardStream) or decode == "worker":
        return images
    if decode == "ray_data":
        return RayDataShardStream.like(images, decode_cpus=float(data.get("stream_decode_cpus", 1.0)))
    return DeviceDecodeStream.like(images, device=device)


def train_loop(loop_cfg: dict[str, Any]) -> None:
    """A cell's pretraining, as its pipeline trains (orchestrator/pipelines.py)."""
    pipeline(loop_cfg["cell"]).function("train")(loop_cfg)


def ssl_loop(loop_cfg: dict[str, Any]) -> None:
    """An SSL method's pretraining (DDP across the run's workers); rank 0 saves the backbone."""
    cfg = loop_cfg["cell"]
    device, use_gpu, resume = _setup(loop_cfg)
    ctx = ray.train.get_context()
    # in memory, or this worker's stream of packed shards (data.loader), decoded on its CPUs, on
    # its device or by Ray Data tasks (data.stream_decode)
    images = pretrain_data(cfg, loop_cfg["cache_dir"], rank=ctx.get_world_rank(), world=ctx.get_world_size(),
                           threads=max(1, int(loop_cfg["cpus_per_worker"])))
    images = with_decoder(images, cfg["data"], device)
    stylizer = bank = None
    store = Storage(loop_cfg["storage"])
    if loop_cfg.get("stylizer_key"):  # fetched into this node's cache from the storage
        stylizer = load_stylizer(str(store.fetch(loop_cfg["stylizer_key"], loop_cfg["cache_dir"])),
                                 expected=stylizer_arch(cfg["stylizer"]))
    if loop_cfg.get("style_bank_key"):
        bank = torch.load(store.fetch(loop_cfg["style_bank_key"], loop_cfg["cache_dir"]), map_location="cpu",
                          weights_only=True)

    def wrap(model):
        if ray.train.get_context().get_world_size() > 1:
            return torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if use_gpu else None)
        return model

    monitor = None
    if loop_cfg.get("monitor"):
        from workloads.evaluation.monitor import ValidationMonitor
        m = loop_cfg["monitor"]
        monitor = ValidationMonitor(cfg, cfg["evaluation"]["targets"][0], train_size=m["train_size"], lr=m["lr"],
                                    epochs=m["epochs"], cache_dir=loop_cfg["cache_dir"], device=device)
    callback = RayTrainCallback(loop_cfg, resume)
    model = pretrain(cfg, images, callback=callback, device=device, resume=resume, wrap_model=wrap,
                     stylizer=stylizer, style_bank=bank, monitor=monitor)
    if ray.train.get_context().get_world_rank() == 0:
        key = loop_cfg["backbone_key"]
        # the whole method (projector etc.: the sensitivity analysis), then the backbone
        _store(loop_cfg, [(f"{key.rsplit('/', 1)[0]}/{METHOD_FILE}", model.state_dict()),
                          (key, model.backbone.state_dict())], torch.save, callback, "model")


def stylizer_loop(loop_cfg: dict[str, Any]) -> None:
    """Train a style-transfer network once; rank 0 saves it (one worker is the sensible scale)."""
    from workloads.data.prepare import load_images, reads_lazily
    from workloads.stylize.loss_networks import build_loss_network
    cfg = loop_cfg["stylizer"]
    device, _, resume = _setup(loop_cfg)
    # content and styles batch by batch when data.loader says they are too large to decode first
    data, size = loop_cfg["data"], cfg["image_size"]
    content, _, _ = load_images(cfg["content_data"], size, loop_cfg["cache_dir"],
                                lazy=reads_lazily(data, cfg["content_data"], size))
    style = style_pool(cfg["style_data"], size, loop_cfg["cache_dir"],
                       lazy=any(reads_lazily(data, ref, size) for ref in cfg["style_data"]))
    loss_net = build_loss_network(cfg["loss_network"], weights=cfg["loss_weights"],
                                  cache_dir=str(Path(loop_cfg["cache_dir"]) / "weights"))
    callback = RayTrainCallback(loop_cfg, resume)
    net = train_stylizer(cfg, content, style, loss_net, callback=callback, device=device, resume=resume)
    if ray.train.get_context().get_world_rank() == 0:
        _store(loop_cfg, [(loop_cfg["stylizer_key"], net.cpu())], save_stylizer, callback, "stylizer")


def sipl_loop(loop_cfg: dict[str, Any]) -> None:
    """SIPL's pretext training (one worker); it saves the encoder the evaluation uses."""
    cfg = loop_cfg["cell"]
    device, _, resume = _setup(loop_cfg)
    from workloads.sipl.cell import SiplMonitor, sipl_config
    from workloads.sipl.data import sipl_pretext_data
    # in memory, or the packed split streamed (data.loader), decoded on the worker's CPUs
    images = sipl_pretext_data(cfg, loop_cfg["cache_dir"], threads=max(1, int(loop_cfg["cpus_per_worker"])))
    from workloads.sipl.train import pretrain_sipl
    monitor = None
    if loop_cfg.get("monitor"):
        monitor = SiplMonitor(cfg, cfg["evaluation"]["targets"][0], epochs=loop_cfg["monitor"]["epochs"],
                              cache_dir=loop_cfg["cache_dir"], device=device)
    callback = RayTrainCallback(loop_cfg, resume)
    model = pretrain_sipl(sipl_config(cfg), images, callback=callback, device=device, resume=resume, monitor=monitor)
    # the paper reports the best validation accuracy over epochs; MLflow has every epoch (resumed or not)
    history = callback.mlflow.get_metric_history(callback.run_id, "sipl/val_pretext_acc")
    if history:
        tracking.log_metrics(callback.mlflow, callback.run_id, {"sipl/best_val_pretext_acc": max(m.value for m in history)})
    _store(loop_cfg, [(loop_cfg["backbone_key"], model.encoder.state_dict())], torch.save, callback, "model")
