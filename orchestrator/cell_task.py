"""One cell's lifecycle as a Ray task: its MLflow run and tags, pretraining through Ray Train
(or a backbone reused by pretraining hash), evaluation, metrics and artifacts, and the
failure recorded on the run instead of raised."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import ray
import yaml

from . import provenance, tracking
from .errors import short_error
from .evaluation_tasks import evaluate_cell
from .input_checks import dataset_refs, cell_data_keys
from .experiment import Cell, flatten
from .pipelines import pipeline
from .ray_exec import RunContext, fit_trainer
from .train_job import TrainJob


def backbone_key(cell: Cell) -> str:
    """Pretrained backbones are shared storage-wide by pretraining hash (the DAG's dedup):
    a cell that differs from another only in its evaluation reuses its backbone. The key's
    folder also holds the whole trained method (pipelines.METHOD_FILE)."""
    return f"backbones/{cell.pretrain_id}/backbone.pt"


def log_datasets(c, run_id: str, cell: Cell, fingerprints: dict[str, str]) -> None:
    """The cell's datasets as MLflow dataset inputs (the UI's "Datasets" column): name
    "<name>/<split>", digest the fingerprint's, context "pretrain" or the YAML path that reads it."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    inputs = {}
    for where, ref, _ in dataset_refs(cell.config):
        key = provenance.data_key(ref)
        if key in inputs or key not in fingerprints:
            continue
        kind_digest = fingerprints[key].split(" ", 1)[0]
        inputs[key] = DatasetInput(Dataset(f"{ref['name']}/{ref['split']}", kind_digest.split(":")[-1][:36],
                                           kind_digest.split(":")[0], json.dumps({"name": ref["name"], "split": ref["split"],
                                                                                  "root": ref["root"]})),
                                   [InputTag("mlflow.data.context", "training" if where == "data.pretrain" else where[:250])])
    if not inputs:
        return
    # MLflow inserts a dataset row per (experiment, name, digest) after checking it is absent: two
    # cells logging the same dataset at once can collide on that insert; the retry finds the row.
    # The tags hold the same fingerprints, so a store that still refuses costs only the UI column
    for attempt in range(3):
        try:
            tracking.retry(c.log_inputs, run_id, list(inputs.values()))
            return
        except Exception as e:  # noqa: BLE001 - MlflowException wraps the store's IntegrityError
            if attempt == 2:
                tracking.set_tags(c, run_id, {"sassl.data_inputs_error": short_error(e)[:500]})
            time.sleep(0.2 * (attempt + 1))


# max_retries=0: a retried cell task would open a second MLflow run for the same cell. The
# driver pins it to its own node (runner.on_driver_node), so losing another node never kills it.
@ray.remote(num_cpus=0, max_retries=0)
def run_cell(cell: Cell, ctx: RunContext, board, style_inputs: dict[str, str] | None = None,
             upstream_error: str | None = None) -> tuple[str, str, dict[str, float] | str]:
    """Pretrain (Ray Train) → evaluate (Ray task) → record; never raises, so one
    failing cell cannot take the others down. ``upstream_error``: a stage this cell
    depends on (its stylizer) failed, so the cell is recorded as failed with that reason."""
    c = tracking.client(ctx.tracking_uri)
    run_id = ctx.interrupted.get(cell.cell_id)
    prov = {**ctx.provenance, **provenance.data_tags(ctx.data, cell_data_keys(cell.config)),
            provenance.TAG_CONFIG: provenance.config_id(cell.config)}
    if run_id is None:
        profile = prov.get(provenance.TAG_PROFILE, "default")
        run_id = tracking.create_run(c, ctx.experiment_id, f"{cell.row} · seed {cell.seed}", tags={
            **prov, tracking.TAG_PARENT: ctx.parent_run_id, tracking.TAG_ROLE: "cell", tracking.TAG_CELL: cell.cell_id,
            tracking.TAG_ROW: cell.row, tracking.TAG_SEED: cell.seed,
            tracking.TAG_NOTE: f"{ctx.experiment}: row '{cell.row}', seed {cell.seed}, profile {profile} "
                               f"(cell {cell.cell_id})"}).info.run_id
        log_datasets(c, run_id, cell, ctx.data)
    else:  # continue the interrupted run: its metrics so far stay, Ray Train resumes from the checkpoint
        have = c.get_run(run_id).data.tags
        previous = have.get(tracking.TAG_RESUMED_BY, "")
        # other code, lock or data than the run started with: recorded beside the first values
        tracking.set_tags(c, run_id, {**provenance.changed(have, prov), tracking.TAG_PARENT: ctx.parent_run_id,
                                      tracking.TAG_RESUMED_BY: ",".join(filter(None, [previous, ctx.parent_run_id]))})
    board.update.remote(cell.cell_id, {"status": "starting", "run_id": run_id})
    try:
        if cell.cell_id not in ctx.interrupted:  # an interrupted run has them already (params are write-once)
            tracking.log_params(c, run_id, {**flatten(cell.config), "cluster.num_workers": ctx.num_workers})
        tracking.set_tags(c, run_id, {tracking.TAG_TARGETS: json.dumps(
            [[t.key, t.label] for t in cell.spec.evaluation.targets]), tracking.TAG_PRETRAIN: cell.pretrain_id,
            tracking.TAG_ROW_INDEX: cell.row_index, tracking.TAG_TARGET_METRICS: json.dumps(
                {t.key: t.metric for t in cell.spec.evaluation.targets if t.metric})})
        if upstream_error:
            raise RuntimeError(upstream_error)
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "cell_config.yaml"
            p.write_text(yaml.safe_dump({"cell_id": cell.cell_id, "row": cell.row, **cell.config}, sort_keys=False))
            tracking.retry(c.log_artifact, run_id, str(p))
        store, key = ctx.store, backbone_key(cell)
        checkpoints = f"{ctx.ray_storage}/{cell.pretrain_id}"
        if ctx.rerun or cell.cell_id in ctx.fresh:
            store.delete(checkpoints)
            store.delete(key)
        if store.exists(key):
            tracking.set_tags(c, run_id, {tracking.TAG_BACKBONE_REUSED: store.uri(key)})
            tracking.retry(c.log_artifact, run_id, str(store.fetch(key, ctx.cache_dir)), "model")
        else:  # rank 0 stores the backbone and logs it on the run
            job = TrainJob(pipeline(cell.config).train, cell.spec, cell.cell_id, run_id, cell.spec.optim.epochs,
                           board=board, backbone_key=key, **(style_inputs or {}))
            fit_trainer(job, ctx, name=cell.pretrain_id, num_workers=ctx.num_workers)
            if store.exists(key):  # the stored backbone is what a rerun reuses: its checkpoints are dead weight
                store.delete(checkpoints)
        board.update.remote(cell.cell_id, {"status": "evaluating"})
        metrics, history, files, machine = evaluate_cell(cell, ctx, key, board)
        tracking.log_params_once(c, run_id, machine)
        tracking.log_metrics(c, run_id, metrics)
        for name, values in history.items():
            for epoch, v in enumerate(values, start=1):
                tracking.log_metrics(c, run_id, {name: v}, epoch)
        with tempfile.TemporaryDirectory() as tmp:  # the evaluation's files came back as bytes
            for folder, name, data in files:
                local = Path(tmp) / folder / name
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(data)
                tracking.retry(c.log_artifact, run_id, str(local), folder)
        tracking.retry(c.set_terminated, run_id, "FINISHED")
        first = cell.spec.evaluation.targets[0].key
        result = f"{first} top-1 {metrics[pipeline(cell.config).headline.format(target=first)]:.1f}"
        if f"random_init/linear/{first}/top1" in metrics:
            result += f" (random init {metrics[f'random_init/linear/{first}/top1']:.1f})"
        board.update.remote(cell.cell_id, {"status": "finished", "result": result})
        return cell.cell_id, "finished", metrics
    except Exception as e:  # noqa: BLE001 - any failure is recorded on the cell's run
        reason = short_error(e)
        try:
            tracking.mark_failed(c, run_id, reason)
        finally:
            board.update.remote(cell.cell_id, {"status": "failed", "result": reason[:80]})
        return cell.cell_id, "failed", reason
