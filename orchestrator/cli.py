"""`sassl`: validate, run and tabulate experiments."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table as RichTable

from .experiment import ConfigError, Experiment, load_experiment

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Experiment orchestrator for style- and augmentation-aware SSL.")
# logs and CI are not terminals: keep rich from wrapping tables at 80 columns there
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _parse_sets(sets: list[str]) -> dict:
    out = {}
    for s in sets:
        if "=" not in s:
            _fail(f"--set {s!r}: expected path=value, e.g. --set optim.epochs=2")
        k, v = s.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _load(path: Path, profile: Optional[str], sets: list[str]) -> Experiment:
    try:
        exp = load_experiment(path, profile, _parse_sets(sets))
    except ConfigError as e:
        _fail(f"{path}: invalid experiment\n{e}")
    for warning in exp.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    return exp


PathArg = typer.Argument(..., help="Experiment YAML.")
ProfileOpt = typer.Option(None, "--profile", "-p", help="A named profile of the YAML (e.g. paper).")
SetOpt = typer.Option([], "--set", "-s", help="Override a field: --set optim.epochs=2 (repeatable).")


@app.command()
def validate(path: Path = PathArg, profile: Optional[str] = ProfileOpt, set_: list[str] = SetOpt) -> None:
    """Check an experiment file and print the cells it expands into. Starts nothing."""
    exp = _load(path, profile, set_)
    from .input_checks import check_inputs
    try:
        check_inputs(exp)
    except ConfigError as e:
        _fail(f"{path}: {e}")
    from .staleness import cell_states
    states = cell_states(exp)
    table = RichTable(title=f"{exp.name}: {len(exp.cells)} cells" + (f" (profile {profile})" if profile else ""))
    for col in ("cell", "row", "seed", "state", "overrides"):
        table.add_column(col)
    for c in exp.cells:
        table.add_row(c.cell_id, c.row, str(c.seed), states[c.cell_id],
                      ", ".join(f"{k}={v}" for k, v in c.overrides.items()))
    console.print(table)
    console.print("[green]valid[/]")


@app.command()
def run(path: Optional[Path] = typer.Argument(None, help="Experiment YAML (omit with --from-search)."),
        profile: Optional[str] = ProfileOpt, set_: list[str] = SetOpt,
        address: Optional[str] = typer.Option(None, help="Join a Ray cluster ('auto', 'ray://host:10001'); "
                                              "default: cluster.address of the YAML, else start a local one."),
        rerun: bool = typer.Option(False, help="Run cells again even if MLflow has them finished."),
        rerun_stale: bool = typer.Option(False, "--rerun-stale", help="Run again the finished cells made by other "
                                         "code or another lock (listed before the run starts; kept by default)."),
        wait: bool = typer.Option(False, "--wait", help="If another live invocation runs some of these cells, wait "
                                  "for it to finish instead of refusing."),
        from_search: Optional[str] = typer.Option(None, help="Run the best configuration of this MLflow search "
                                                  "run (with the YAML's seeds, or --seeds)."),
        seeds: Optional[str] = typer.Option(None, help="Seeds for --from-search, e.g. 0,1,2."),
        tracking_uri: Optional[str] = typer.Option(None, help="MLflow store of --from-search (default: "
                                                   "$MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db)")) -> None:
    """Run every cell of an experiment (or its search) on Ray, log to MLflow, print its tables."""
    from .ray_auth import use_token_if_present
    use_token_if_present(address)  # before anything imports ray (--from-search does, to read the search)
    if from_search:
        exp = _load_best(from_search, seeds, tracking_uri, set_)
    elif path is None:
        _fail("give an experiment file, or --from-search <search run id>")
    else:
        exp = _load(path, profile, set_)
    label = path or f"search {from_search}"
    use_token_if_present(address or exp.config.cluster.address)  # a YAML's address (ray not imported yet)
    if exp.config.search is not None:
        from .search import run_search
        try:
            result = run_search(exp, address=address, console=console)
        except ConfigError as e:
            _fail(f"{label}: {e}")
        console.print(f"search run {result.search_run_id}: {result.trials} trials ({result.stopped_early} stopped "
                      f"early by ASHA, {len(result.failed)} failed) in {result.seconds:.0f} s; best "
                      f"{exp.config.search.metric} {result.best_value:.2f} with "
                      + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in result.best_params.items()))
        console.print(f"re-run the best configuration with seeds: sassl run --from-search {result.search_run_id}")
        _print_tables(exp.name, result.tracking_uri, Path(exp.config.tracking.run_dir), "md",
                      profile=exp.profile or "default")
        return
    from .runner import run_experiment
    try:
        summary = run_experiment(exp, address=address, rerun=rerun, console=console, rerun_stale=rerun_stale,
                                 wait=wait)
    except ConfigError as e:
        _fail(f"{label}: {e}")
    console.print(f"{len(summary.finished)} finished, {len(summary.skipped)} skipped (already finished), "
                  f"{len(summary.failed)} failed in {summary.seconds:.0f} s; MLflow parent run "
                  f"{summary.parent_run_id} in {summary.tracking_uri}")
    for cid, reason in summary.failed.items():
        err.print(f"[red]cell {cid} failed:[/] {reason}", highlight=False)
    _print_tables(exp.name, summary.tracking_uri, Path(exp.config.tracking.run_dir), "md",
                  profile=exp.profile or "default")
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def rehearse(paths: list[Path] = typer.Argument(..., help="Experiment YAML file(s): several are rehearsed in one go, "
                                                "each distinct piece timed once."),
             profile: Optional[str] = ProfileOpt, set_: list[str] = SetOpt,
             steps: int = typer.Option(3, min=1, help="Steps timed per piece (after one untimed warm-up step)."),
             address: Optional[str] = typer.Option(None, help="Join this Ray cluster (as `sassl run`); "
                                                   "default: cluster.address of the YAML, else a local one.")) -> None:
    """Run every distinct piece of an experiment for a few steps at its real settings and estimate
    the whole grid's wall time, before a cluster is booked. Trains nothing to completion."""
    from .ray_auth import use_token_if_present
    exps = [_load(path, profile, set_) for path in paths]  # every file valid before anything runs
    use_token_if_present(address or exps[0].config.cluster.address)
    from .rehearsal import SharedPieces, table
    from .rehearsal import rehearse as run_rehearsal
    shared, total = SharedPieces(), 0.0
    for path, exp in zip(paths, exps):
        try:
            report = run_rehearsal(exp, steps=steps, address=address, console=console, shared=shared)
        except ConfigError as e:
            _fail(f"{path}: {e}")
        out = RichTable(title=f"{exp.name}: rehearsal" + (f" (profile {profile})" if profile else ""))
        for col in ("piece", "what", "steps timed", "s/step", "peak MB", "est. s per cell"):
            out.add_column(col)
        for row in table(report):
            out.add_row(*row)
        console.print(out)
        what = "search" if exp.config.search else "grid"
        console.print(f"estimated wall time of the {what}: {report.estimate_s / 60:.1f} min "
                      f"({report.estimate_s:.0f} s) for {report.cells} {report.unit} on {report.slots} slot(s); "
                      f"MLflow run {report.run_id}")
        total += report.estimate_s
    if len(exps) > 1:
        console.print(f"{len(exps)} files: {len(shared.refs)} distinct pieces timed ({shared.reused} shared between "
                      f"files); {total / 3600:.1f} h ({total:.0f} s) if run one after another")


AddressOpt = typer.Option(None, "--address", help="Ray Jobs API of the cluster's head node, e.g. "
                          "http://<head>:8265 (default: $RAY_JOBS_ADDRESS, $RAY_ADDRESS, http://127.0.0.1:8265).")


@app.command()
def submit(path: Path = PathArg, profile: Optional[str] = ProfileOpt, set_: list[str] = SetOpt, address: Optional[str] = AddressOpt,
           job_id: Optional[str] = typer.Option(None, help="Submission id (default: Ray picks one)."),
           follow: bool = typer.Option(False, "--follow", help="Stream the job's logs until it ends.")) -> None:
    """Submit an experiment to a Ray cluster as a Ray job (validated here first)."""
    from . import jobs
    exp = _load(path, profile, set_)
    try:
        jid, entrypoint = jobs.submit(exp, address=address, profile=profile, sets=set_, job_id=job_id)
    except ConfigError as e:
        _fail(str(e))
    console.print(f"submitted job {jid} to {jobs.jobs_address(address)}: {entrypoint}", highlight=False)
    console.print(f"follow it with: sassl status {jid} / sassl logs {jid} --follow", highlight=False)
    if follow:
        try:
            _follow(jid, address)
        except ConfigError as e:
            _fail(str(e))


def _follow(jid: str, address: Optional[str]) -> None:
    from . import jobs
    jobs.follow(jid, address, lambda chunk: (sys.stdout.write(chunk), sys.stdout.flush()))
    st = jobs.status(jid, address)
    console.print(f"job {jid}: {st['status']} {st['message']}", highlight=False)
    if st["status"] != "SUCCEEDED":
        raise typer.Exit(1)


JobArg = typer.Argument(..., help="The submission id `sassl submit` printed.")


@app.command()
def status(job_id: str = JobArg, address: Optional[str] = AddressOpt) -> None:
    """State of a submitted job (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from . import jobs
    try:
        st = jobs.status(job_id, address)
    except ConfigError as e:
        _fail(str(e))
    console.print(f"{st['job_id']}: {st['status']}" + (f" ({st['message']})" if st["message"] else ""),
                  highlight=False)


@app.command()
def logs(job_id: str = JobArg, address: Optional[str] = AddressOpt,
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming until the job ends.")) -> None:
    """A submitted job's driver output."""
    from . import jobs
    try:
        if follow:
            _follow(job_id, address)
        else:
            typer.echo(jobs.logs(job_id, address), nl=False)
    except ConfigError as e:
        _fail(str(e))


@app.command()
def ui(run_dir: Path = typer.Option(Path(os.environ.get("SASSL_RUN_DIR", "runs")),
                                    help="Run directory whose MLflow store (mlflow.db, artifacts/) is served."),
       backend_store_uri: Optional[str] = typer.Option(None, help="Serve this store instead (e.g. postgresql://…)."),
       host: str = typer.Option("127.0.0.1", help="Interface to listen on; 0.0.0.0 exposes the store to the network."),
       port: int = typer.Option(5000, help="Port to listen on.")) -> None:
    """MLflow UI and tracking server over an experiment's store; multi-node runs log to its http:// URI."""
    from .ui import serve
    try:
        serve(run_dir, backend_store_uri, host, port, console)
    except ConfigError as e:
        _fail(str(e))


def _load_best(search_run: str, seeds: Optional[str], uri: Optional[str], sets: list[str]) -> Experiment:
    from . import tracking
    from .experiment import build_experiment
    from .search import best_experiment
    uri = tracking.resolve_tracking_uri(uri, Path(os.environ.get("SASSL_RUN_DIR", "runs")))
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        _fail(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2")
    try:
        # the search's whole resolved config: every field looks written, none was by this user
        return build_experiment(best_experiment(uri, search_run, seed_list), None, _parse_sets(sets), written=set())
    except ConfigError as e:
        _fail(str(e))


def _print_tables(name: str, uri: str, run_dir: Path, fmt: str, baselines: list[str] | None = None,
                  ci: str | None = None, profile: str | None = None, strict: bool = False) -> None:
    from results import BaselineError, MixError, build_tables
    from results.collect import NoRunsError
    try:
        tables = build_tables(name, uri, baselines, ci, profile=profile, strict=strict)
    except (NoRunsError, BaselineError) as e:
        _fail(str(e))
    except MixError as e:
        _fail(f"--strict: {e}", code=1)
    out_dir = run_dir / "tables"
    for stem, table in tables.items():
        paths = table.save(out_dir, stem)
        text = table.latex() if fmt == "latex" else paths["csv"].read_text() if fmt == "csv" else table.markdown()
        typer.echo(text)  # plain: a table must survive copy-paste and redirection
        typer.echo(f"(written to {paths['md']}, .csv, .tex)")
    _plots(name, uri, out_dir, baselines, profile)


def _plots(name: str, uri: str, out_dir: Path, baselines: list[str] | None = None, profile: str | None = None) -> None:
    """Plots next to the tables, also logged on the experiment's newest parent run."""
    from results.plots import build_plots

    from . import tracking
    plots = build_plots(name, uri, out_dir, baselines, profile)
    if not plots:
        return
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(name)
    parents = [r for role in ("experiment", "search") for r in c.search_runs(
        [exp.experiment_id], f"tags.`{tracking.TAG_ROLE}` = '{role}'", order_by=["attributes.start_time DESC"],
        max_results=1)]
    newest = max(parents, key=lambda r: r.info.start_time, default=None)
    for p in plots:
        if newest is not None:
            tracking.retry(c.log_artifact, newest.info.run_id, str(p), "plots")
        typer.echo(f"(plot: {p})")


@app.command()
def tables(experiment: str = typer.Argument(..., help="Experiment name, or its YAML file."),
           fmt: str = typer.Option("md", "--format", "-f", help="md, latex or csv"),
           tracking_uri: Optional[str] = typer.Option(None, help="MLflow store (default: the YAML's, "
                                                      "else $MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db)"),
           run_dir: Path = typer.Option(Path(os.environ.get("SASSL_RUN_DIR", "runs")),
                                        help="Where tables are written and the default store lives."),
           baseline: Optional[list[str]] = typer.Option(
               None, help="Baseline row for the paired Δ part (repeatable: each row is compared with the "
                          "closest baseline above it). Default: the YAML's tables.baseline as last run."),
           ci: Optional[str] = typer.Option(None, help="Paired interval: t or bootstrap (default: the YAML's "
                                                        "tables.ci, else t)."),
           profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Tabulate this profile's cells "
                                                 "(default: the profile of the experiment's newest invocation)."),
           strict: bool = typer.Option(False, "--strict", help="Refuse (exit 1) a table with a row whose seeds "
                                       "were made by other configurations, profiles, code, locks or data.")) -> None:
    """Rebuild an experiment's tables from MLflow alone."""
    if fmt not in ("md", "latex", "csv"):
        _fail(f"--format {fmt!r}: choose md, latex or csv")
    from results.paired import CI_METHODS
    if ci is not None and ci not in CI_METHODS:
        _fail(f"--ci {ci!r}: choose {' or '.join(CI_METHODS)}")
    from . import tracking
    name, uri = experiment, tracking_uri
    if experiment.endswith((".yaml", ".yml")):
        exp = _load(Path(experiment), None, [])
        name, run_dir = exp.name, Path(exp.config.tracking.run_dir)
        uri = uri or exp.config.tracking.uri
        # the YAML as it is now (an edited baseline shows without running again)
        baseline, ci = baseline or exp.config.tables.baselines(), ci or exp.config.tables.ci
    uri = tracking.resolve_tracking_uri(uri, run_dir)
    _print_tables(name, uri, run_dir, fmt, baseline or None, ci, profile, strict)


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


plot_app = typer.Typer(no_args_is_help=True, help="Analysis plots, logged to MLflow.")
app.add_typer(plot_app, name="plot")


@plot_app.command("style-embeddings")
def style_embeddings(experiment: str = typer.Argument(..., help="Experiment name with a finished stylizer run."),
                     extra: list[str] = typer.Option([], "--extra", help="Also embed a dataset, as name:split "
                                                     "(e.g. cifar10-kit:test); its bank is logged too."),
                     tracking_uri: Optional[str] = typer.Option(None, help="MLflow store (default: "
                                                                "$MLFLOW_TRACKING_URI, else the run directory's)."),
                     run_dir: Path = typer.Option(Path(os.environ.get("SASSL_RUN_DIR", "runs")),
                                                  help="Run directory (its cache holds the datasets).")) -> None:
    """t-SNE (PCA init) of the style banks of an experiment's stylizer (SASSL A.2)."""
    import tempfile

    import torch

    from results.collect import NoRunsError
    from results.style_embeddings import BANK_FOLDER, download_banks, plot_style_embeddings, stylizer_runs

    from . import tracking
    from .stylizer_stage import ARTIFACT
    uri = tracking.resolve_tracking_uri(tracking_uri, run_dir)
    try:
        run = stylizer_runs(uri, experiment)[0]
    except NoRunsError as e:
        _fail(str(e))
    c = tracking.client(uri)
    rid = run.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        if extra:
            from workloads.stylize.model import load_stylizer
            from workloads.spec import DatasetRef
            from workloads.stylize.train import bank_size, style_bank, style_pool
            net_path = c.download_artifacts(rid, ARTIFACT, tmp)
            arch = torch.load(net_path, map_location="cpu", weights_only=True)["config"]
            net = load_stylizer(net_path, expected=arch)
            params = {k: run.data.params.get(f"stylizer.{k}") for k in ("pretrained", "style_size", "image_size")}
            params = {k: None if v in (None, "None", "") else v for k, v in params.items()}
            # the three of the run's stylizer params that bank_size reads (MLflow keeps them as text)
            size = bank_size(SimpleNamespace(pretrained=params["pretrained"], image_size=int(params["image_size"] or 64),
                                             style_size=int(params["style_size"]) if params["style_size"] else None))
            for spec in extra:
                name, _, split = spec.partition(":")
                ref = DatasetRef(name=name, split=split or "train", root=None, download=False)
                bank = style_bank(net, style_pool([ref], size, str(run_dir / "cache")), size)
                p = Path(tmp) / f"{name}-{split or 'train'}.pt"
                torch.save(bank, p)
                tracking.retry(c.log_artifact, rid, str(p), BANK_FOLDER)
        banks = download_banks(uri, rid, Path(tmp) / "banks")
        out = plot_style_embeddings(banks, run_dir / "plots" / f"{experiment}-style-embeddings.png")
        tracking.retry(c.log_artifact, rid, str(out), "plots")
    typer.echo(f"{out} ({', '.join(f'{k}: {len(v)}' for k, v in sorted(banks.items()))}); logged to stylizer run {rid}")


@app.command()
def stylize(content: Path = typer.Option(..., "--content", help="A content image, or a folder of them."),
            style: Path = typer.Option(..., "--style", help="A style image, or a folder of them."),
            out: Path = typer.Option(Path("stylized.png"), "--out", help="The content x style grid (PNG)."),
            out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Also write one PNG per pair here."),
            stylizer: str = typer.Option("magenta-arbitrary-v1", help="magenta-arbitrary-v1, a stylizer "
                                         "checkpoint file, or the MLflow run id of a stylizer run."),
            alpha: float = typer.Option(1.0, help="Feature blending: z = α·P(style) + (1 − α)·P(content)."),
            beta: float = typer.Option(1.0, help="Pixel interpolation: β·stylized + (1 − β)·content."),
            size: int = typer.Option(64, help="Content images are centre-cropped and resized to this."),
            work_size: Optional[int] = typer.Option(None, help="Stylize at this size and come back to --size "
                                                    "(what SASSL does with small crops; default: --size)."),
            style_size: int = typer.Option(256, help="Style images are embedded at this size."),
            tracking_uri: Optional[str] = typer.Option(None, help="MLflow store for a run id (default: "
                                                       "$MLFLOW_TRACKING_URI, else sqlite:///<run-dir>/mlflow.db)"),
            run_dir: Path = typer.Option(Path(os.environ.get("SASSL_RUN_DIR", "runs")),
                                         help="Its cache/weights keeps the converted pretrained network.")) -> None:
    """Write a content x style grid of what the style augmentation does, before a long run."""
    import torch

    from workloads.stylize.preview import PreviewInputError, read_images, stylize_pairs, write_grid, write_pairs
    if not (0 <= alpha <= 1 and 0 <= beta <= 1):
        _fail(f"--alpha and --beta must lie in [0, 1], got {alpha} and {beta}")
    for name, v in (("--size", size), ("--style-size", style_size), ("--work-size", work_size or 16)):
        if v < 16:
            _fail(f"{name} must be >= 16, got {v}")
    try:
        c_names, c_images = read_images(content, size, "--content")
        s_names, s_images = read_images(style, style_size, "--style")
    except PreviewInputError as e:
        _fail(str(e))
    net = _preview_stylizer(stylizer, tracking_uri, run_dir)
    with torch.no_grad():
        result = stylize_pairs(net, c_images, s_images, alpha=alpha, beta=beta, work_size=work_size)
    grid = write_grid(c_images, s_images, result, out)
    typer.echo(f"{grid}: {len(c_names)} content x {len(s_names)} style images, alpha {alpha:g}, beta {beta:g}, "
               f"stylizer {stylizer}")
    if out_dir is not None:
        typer.echo(f"{len(write_pairs(c_names, s_names, result, out_dir))} images in {out_dir}")


def _preview_stylizer(ref: str, tracking_uri: Optional[str], run_dir: Path):
    """A stylizer network from a pretrained name, a checkpoint file or an MLflow stylizer run id."""
    import re
    import tempfile

    import torch

    from workloads.stylize.magenta import PRETRAINED, MissingPretrainedError, pretrained_checkpoint
    from workloads.stylize.model import load_stylizer
    try:
        if ref in PRETRAINED:
            path = pretrained_checkpoint(ref, cache_dir=run_dir / "cache" / "weights")
        elif Path(ref).expanduser().is_file():
            path = Path(ref).expanduser()
        elif re.fullmatch(r"[0-9a-f]{32}", ref):
            from . import tracking
            from .stylizer_stage import ARTIFACT
            c = tracking.client(tracking.resolve_tracking_uri(tracking_uri, run_dir))
            try:
                path = Path(c.download_artifacts(ref, ARTIFACT, tempfile.mkdtemp(prefix="sassl-stylizer-")))
            except Exception as e:  # noqa: BLE001 - MLflow raises several types for an unknown run
                _fail(f"--stylizer {ref}: no stylizer run with this id in the store ({str(e).splitlines()[0]})")
        else:
            _fail(f"--stylizer {ref!r}: not one of {', '.join(PRETRAINED)}, an existing file or an MLflow run id")
        arch = torch.load(path, map_location="cpu", weights_only=True)
        return load_stylizer(path, expected=arch["config"] if isinstance(arch, dict) and "config" in arch else {})
    except MissingPretrainedError as e:
        _fail(f"--stylizer {ref}: {e}")
    except ValueError as e:
        _fail(f"--stylizer {ref}: {e}")


@app.command()
def pack(dataset: str = typer.Argument(..., help="A dataset name: imagefolder, stylefolder, imagenet, cifar10, "
                                       "a kit, ... (what a YAML's data reference names)."),
         out: Path = typer.Argument(..., help="Folder of packed splits; the split goes to OUT/<split>/."),
         split: str = typer.Option("train", help="The split to pack (ignored by imagefolder/stylefolder's "
                                   "single folder, which is written as OUT/<split>)."),
         root: Optional[str] = typer.Option(None, help="Where the dataset is (its folder)."),
         max_side: int = typer.Option(320, help="Re-encode with the shorter side at most this (pixels)."),
         quality: int = typer.Option(90, help="JPEG quality of the re-encoded images."),
         shard_size: int = typer.Option(1024, help="Images per Parquet shard."),
         seed: int = typer.Option(0, help="Seed of the row order (shards mix the classes).")) -> None:
    """Pack a dataset split into Parquet shards of JPEGs (resumable): read it back with
    `data: {name: packed, root: OUT, split: SPLIT}`."""
    from tqdm.auto import tqdm

    from workloads.data import DatasetError, open_source
    from workloads.data.shards import check_settings, pack_split
    try:
        check_settings(max_side, quality, shard_size)
        source = open_source(dataset, split=split, image_size=32, root=root)
        if source.split != split:  # a single-folder source: name its split as asked
            source.split = split
        with tqdm(total=len(source), unit="img", desc=f"pack {dataset}/{split}") as bar:
            report = pack_split(source, out, max_side=max_side, quality=quality, shard_size=shard_size, seed=seed,
                                describe={"name": dataset, "split": split, "root": root}, progress=bar.update)
    except (DatasetError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"{report.folder}: {report.images} images in {report.written + report.reused} shards "
               f"({report.reused} kept from an earlier run), {len(report.skipped)} unreadable skipped")
    for line in report.skipped[:5]:
        typer.echo(f"  skipped {line}")
