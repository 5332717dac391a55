"""benchmarks/gpu_check.py runs on CPU at a tiny size, so the GPU check cannot rot unnoticed."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
TINY = ["--device", "cpu", "--steps", "2", "--warmup", "1", "--sizes", "32", "--batch", "8", "--width", "0.125",
        "--stylizer", "", "--decode-images", "16", "--decode-size", "32"]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_runs_every_setting_on_cpu(capsys):
    assert _module().main(TINY) == 0
    out = capsys.readouterr().out
    assert "precision bf16; stylizer: random init" in out
    for method in ("moco_v2", "simclr"):
        for variant in ("default", "sassl", "cassle"):
            assert f"{method:<8} {variant:<8}" in out
        assert f"ratio 32 px {method}: sassl / default = " in out and f"ratio 32 px {method}: cassle / default" in out
    assert "torchvision on cpu" in out and "crop boxes identical" in out
    assert "FAILED" not in out


def test_gpu_check_reports_a_failing_setting_and_exits_1(capsys):
    # fp16 has no CPU path (its GradScaler needs CUDA): every setting fails, each one is reported
    assert _module().main(TINY + ["--precision", "fp16"]) == 1
    out = capsys.readouterr().out
    assert out.count("FAILED: ValueError: optim.precision fp16 needs a CUDA device") == 6
