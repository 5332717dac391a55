"""The pipeline registry: one entry per ``method.name``, saying how a cell of that kind trains,
how it is evaluated, its headline metric and its limits. Everything that differs between an
SSL method and SIPL (or whatever comes next) is read from here; nothing else switches on a
method's name. The functions are named as ``module:function`` and imported when used, so the
schema can consult the registry without importing PyTorch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from .config import BYOL, BarlowTwins, MoCoV2, MoCoV3, SimCLR, Sipl
from .train_job import SIPL_LOOP, SSL_LOOP, resolve

# what a cell's training hands its evaluation besides backbone.pt: the whole trained method
# (projector too), in the same folder, for the sensitivity analysis
METHOD_FILE = "method.pt"


@dataclass(frozen=True)
class Pipeline:
    schema: type[BaseModel]           # the method section's pydantic model
    label: str                        # how messages name it
    train: str                        # Ray Train loop of a cell: (TrainJob) -> None
    evaluate: str                     # (spec, target, backbone state, cache_dir=, device=, progress=,
    #                                   artifact_dir=, method_state=) -> {"metrics", "split_file", ...}
    headline: str                     # the live table's metric, {target} filled in
    max_workers: int | None = None    # a pipeline without DDP trains on one worker per cell
    optimizers: tuple[str, ...] = ("sgd", "lars")  # the optimisers its training loop builds
    optimizer_reason: str = ""
    mixed_precision: bool = True      # whether its training loop honours optim.precision / optim.compile
    vit: bool = True                  # whether its network may be a Vision Transformer (backbone.arch vit_*)
    # who may decode its streamed pretraining images (data.stream_decode)
    stream_decoders: tuple[str, ...] = ("worker", "device", "ray_data")
    # cell fields its training and evaluation never read (orchestrator/consistency.py warns when a
    # file writes one), and why, as the warning says it
    ignores: tuple[str, ...] = ()
    ignores_reason: str = ""
    # `sassl rehearse`: a few of its training steps, (spec, cache_dir, steps, threads, device) ->
    # figures (workloads/rehearse/steps.py), and one target's evaluation timed, (spec, target, first,
    # device) -> figures (workloads/rehearse/evaluation.py)
    rehearse: str = "workloads.rehearse.steps:ssl_steps"
    rehearse_evaluation: str = "workloads.rehearse.evaluation:ssl_evaluation"
    # the method fields its evaluation reads: the rehearsal times one evaluation per distinct value
    evaluation_reads: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.schema.model_fields["name"].default

    def function(self, which: str) -> Callable[..., Any]:
        return resolve(getattr(self, which))

    def limits(self, cfg: dict[str, Any], num_workers: int) -> str | None:
        """Why a resolved cell config cannot run under this pipeline (None when it can)."""
        if self.max_workers is not None and num_workers > self.max_workers:
            workers = "one worker" if self.max_workers == 1 else f"at most {self.max_workers} workers"
            return f"cluster.num_workers: {self.label} trains on {workers} per cell (no DDP); set it to {self.max_workers}"
        if cfg["optim"]["optimizer"] not in self.optimizers:
            reason = self.optimizer_reason or f"{self.label} trains with {' or '.join(self.optimizers)}"
            return f"optim.optimizer: {reason}; set optim.optimizer: {self.optimizers[0]}"
        if not self.mixed_precision and (cfg["optim"]["precision"] != "fp32" or cfg["optim"]["compile"]):
            field = "optim.precision" if cfg["optim"]["precision"] != "fp32" else "optim.compile"
            return f"{field}: {self.label} trains in fp32 without torch.compile; leave optim.precision fp32 " \
                   "and optim.compile false"
        if not self.vit and cfg["backbone"]["arch"].startswith("vit_"):
            return f"backbone.arch: {self.label}'s network is a ResNet; {cfg['backbone']['arch']} is a Vision Transformer"
        data = cfg["data"]
        if data["loader"] != "memory" and data["stream_decode"] not in self.stream_decoders:
            return f"data.stream_decode: {self.label} decodes a stream with {', '.join(self.stream_decoders)}; " \
                   f"got {data['stream_decode']}"
        return None


_SSL = dict(train=SSL_LOOP, evaluate="workloads.evaluation.evaluate:evaluate_target",
            headline="linear/{target}/top1", optimizers=("sgd", "lars", "adamw"))

PIPELINES: dict[str, Pipeline] = {p.name: p for p in (
    Pipeline(MoCoV2, "MoCo v2", **_SSL),
    Pipeline(MoCoV3, "MoCo v3", **_SSL),
    Pipeline(SimCLR, "SimCLR", **_SSL),
    Pipeline(BYOL, "BYOL", **_SSL),
    Pipeline(BarlowTwins, "Barlow Twins", **_SSL),
    Pipeline(Sipl, "SIPL", train=SIPL_LOOP, evaluate="workloads.sipl.cell:evaluate_target",
             headline="mlp/{target}/top1", max_workers=1, optimizers=("adam",),
             optimizer_reason="SIPL trains with Adam (the paper's optimiser)", mixed_precision=False, vit=False,
             stream_decoders=("worker",),  # its pretext decodes on the worker's threads (workloads/sipl/data.py)
             ignores=("augmentation.view1", "augmentation.view2", "augmentation.style", "augmentation.prefetch",
                      "optim.momentum", "optim.schedule", "optim.warmup_epochs", "optim.scale_lr", "evaluation.linear_probe",
                      "evaluation.fine_tune", "evaluation.few_shot", "evaluation.lbfgs", "evaluation.sensitivity",
                      "evaluation.conditioning_check", "evaluation.rotation", "evaluation.corruptions",
                      "evaluation.retrieval"),
             ignores_reason="SIPL has its own patch augmentations, Adam at a constant rate and an MLP head",
             rehearse="workloads.rehearse.steps:sipl_steps",
             rehearse_evaluation="workloads.rehearse.evaluation:sipl_evaluation",
             evaluation_reads=("embed_dim", "geometry", "downstream")),
)}


def pipeline(cfg: dict[str, Any]) -> Pipeline:
    """The entry of a resolved cell config."""
    return PIPELINES[cfg["method"]["name"]]
