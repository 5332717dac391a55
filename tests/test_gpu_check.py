"""benchmarks/gpu_check.py runs on CPU at a tiny size, so the GPU check cannot rot unnoticed; and
with only torch, torchvision and numpy importable, as on a GPU machine that has nothing else."""
import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
TINY = ["--device", "cpu", "--steps", "2", "--warmup", "1", "--sizes", "32", "--batch", "8", "--width", "0.125",
        "--stylizer", "", "--decode-images", "16", "--decode-size", "32", "--syncbn-batch", "4", "--syncbn-size", "32",
        "--vit-sizes", "32", "--vit-arch", "vit_tiny", "--vit-patch", "8", "--vit-depth", "1", "--vit-batch", "8",
        "--timm-wheel", ""]
# what a GPU machine lacks: every import of these (or their submodules) fails in the check's process
ABSENT = ("tqdm", "ray", "mlflow", "pydantic", "optuna", "yaml", "pandas", "sklearn", "scipy", "timm",
          "orchestrator", "results", "onnx", "matplotlib", "requests")
RUN_WITHOUT = f"""
import runpy, sys
for name in {ABSENT!r}:
    sys.modules[name] = None  # import fails; importlib.util.find_spec says not installed
sys.argv = [{str(SCRIPT)!r}] + sys.argv[1:]
runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
"""


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_runs_every_setting_on_cpu_with_only_torch_torchvision_and_numpy():
    res = subprocess.run([sys.executable, "-c", RUN_WITHOUT, *TINY], capture_output=True, text=True, timeout=300)
    out = res.stdout
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "precision bf16; stylizer: random init" in out
    for method in ("moco_v2", "simclr"):
        for variant in ("default", "sassl", "cassle"):
            assert f"{method:<8} {variant:<8}" in out
        assert f"ratio 32 px {method}: sassl / default = " in out and f"ratio 32 px {method}: cassle / default" in out
    assert "torchvision on cpu" in out and "crop boxes identical" in out
    assert "sync BN: resnet50 32 px batch 4 bf16: plain BN peak n/a MiB" in out and "ratio sync / plain" in out
    assert "MoCo v3 ViT settings SKIPPED: timm is not installed" in out  # said, not failed
    assert "FAILED" not in out


def test_gpu_check_times_moco_v3_on_a_vit_plain_and_with_sassl(capsys):
    """Where timm imports (here: installed), the MoCo v3 ViT settings run in bf16 with their ratio."""
    assert _module().main(TINY + ["--sizes"]) == 0  # the ResNet settings left out: only the ViT's
    out = capsys.readouterr().out
    for variant in ("default", "sassl"):
        assert f"  32 px  vit_tiny/8 batch 8    moco_v3  {variant:<8}" in out
    assert "ratio 32 px moco_v3: sassl / default = " in out and "SKIPPED" not in out


def test_gpu_check_reports_a_failing_setting_and_exits_1(capsys):
    # fp16 has no CPU path (its GradScaler needs CUDA): every setting fails, each one is reported
    assert _module().main(TINY + ["--precision", "fp16"]) == 1
    out = capsys.readouterr().out
    assert out.count("FAILED: ValueError: optim.precision fp16 needs a CUDA device") == 9  # 6 + 2 ViT settings + sync BN


def test_gpu_checks_written_out_views_are_the_schemas():
    from specs import view1, view2
    assert _module().VIEWS == (view1(), view2())
