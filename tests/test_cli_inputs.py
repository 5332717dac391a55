"""Bad inputs are refused by `sassl validate` before anything starts, naming the field or file."""
import subprocess
import sys

import yaml
from PIL import Image

from workloads.stylize.model import StyleTransferNet, save_stylizer


def validate(tmp_path, cfg):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "tracking": {"run_dir": str(tmp_path / "runs")}, **cfg}))
    res = subprocess.run([sys.executable, "-m", "orchestrator", "validate", str(path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    return res.returncode, " ".join(res.stderr.split())


STYLE_ON = {"augmentation": {"style": {"enabled": True}}}


def test_missing_style_folder(tmp_path):
    code, err = validate(tmp_path, {"augmentation": {"style": {
        "enabled": True, "style_data": {"name": "stylefolder", "root": str(tmp_path / "nope")}}}})
    assert code == 2 and "augmentation.style.style_data:" in err and str(tmp_path / "nope") in err
    assert not (tmp_path / "runs").exists()


def test_style_folder_with_only_corrupt_images(tmp_path):
    folder = tmp_path / "styles"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not an image")
    code, err = validate(tmp_path, {**STYLE_ON, "stylizer": {"style_data": [{"name": "stylefolder", "root": str(folder)}]}})
    assert code == 2 and "stylizer.style_data[0]:" in err and str(folder) in err


def test_corrupt_style_image_is_skipped_when_others_are_fine(tmp_path):
    folder = tmp_path / "styles"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not an image")
    Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "b.png")
    code, err = validate(tmp_path, {**STYLE_ON, "stylizer": {"style_data": [{"name": "stylefolder", "root": str(folder)}]}})
    assert code == 0, err
    assert "skipped 1 unreadable image" in err


def test_stylizer_checkpoint_of_another_architecture(tmp_path):
    ckpt = tmp_path / "stylizer.pt"
    save_stylizer(StyleTransferNet(width=0.5), ckpt)
    code, err = validate(tmp_path, {**STYLE_ON, "stylizer": {"checkpoint": str(ckpt), "width": 0.25}})
    assert code == 2 and "stylizer.checkpoint:" in err and "width" in err and str(ckpt) in err
    code, err = validate(tmp_path, {**STYLE_ON, "stylizer": {"checkpoint": str(tmp_path / "missing.pt")}})
    assert code == 2 and "neither an existing file nor an MLflow run id" in err


def test_alpha_beta_p_out_of_range(tmp_path):
    for field, value, msg in (("p", 1.5, "augmentation.style.p: must be <= 1"),
                              ("alpha", [-0.1, 0.3], "augmentation.style.alpha: must lie in [0, 1]"),
                              ("beta", [0.2, 1.2], "augmentation.style.beta: must lie in [0, 1]")):
        code, err = validate(tmp_path, {"augmentation": {"style": {"enabled": True, field: value}}})
        assert code == 2 and msg in err, err
