"""`sassl stylize`: a content x style grid (and one file per pair) from image files or folders,
with clear errors for missing or unreadable inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from orchestrator.cli import app
from workloads.data.prepare import load_images
from workloads.spec import DatasetRef
from workloads.stylize import magenta

CACHE = Path("~/.cache/sassl/weights").expanduser()  # shared with test_magenta_port and real runs


def _kit(name: str, split: str, n: int, size: int) -> list[np.ndarray]:
    x = load_images(DatasetRef(name=name, split=split, root=None, download=False), size, None)[0][:n]
    return [im.permute(1, 2, 0).numpy() for im in x]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("stylize")
    (root / "content").mkdir()
    (root / "style").mkdir()
    for i, im in enumerate(_kit("cifar10-kit", "test", 3, 32)):
        Image.fromarray(im).save(root / "content" / f"c{i}.png")
    for i, im in enumerate(_kit("paintings-kit", "all", 2, 64)):
        Image.fromarray(im).save(root / "style" / f"s{i}.jpg")
    return root


@pytest.fixture(scope="module")
def pretrained_file() -> str:
    return str(magenta.pretrained_checkpoint(cache_dir=CACHE))


def run(*args):
    return CliRunner().invoke(app, ["stylize", *args])


def test_grid_and_pairs_from_folders(folders, pretrained_file, tmp_path):
    out, pairs = tmp_path / "grid.png", tmp_path / "pairs"
    res = run("--content", str(folders / "content"), "--style", str(folders / "style"), "--out", str(out),
              "--out-dir", str(pairs), "--stylizer", pretrained_file, "--size", "32", "--work-size", "64",
              "--style-size", "64", "--alpha", "1", "--run-dir", str(tmp_path / "runs"))
    assert res.exit_code == 0, res.output
    assert "3 content x 2 style images" in res.output
    grid = np.asarray(Image.open(out))
    # (1 + 3) rows x (1 + 2) columns of 128-px tiles with 2-px padding
    assert grid.shape == (2 + 4 * 130, 2 + 3 * 130, 3)
    files = sorted(p.name for p in pairs.iterdir())
    assert files == [f"c{i}__s{j}.png" for i in range(3) for j in range(2)]
    content = np.asarray(Image.open(folders / "content" / "c0.png")).astype(float)
    a, b = (np.asarray(Image.open(pairs / f"c0__s{j}.png")).astype(float) for j in range(2))
    assert a.shape == content.shape == (32, 32, 3)
    # stylized: far from the content, and the two styles give different images
    assert np.abs(a - content).mean() > 10 and np.abs(a - b).mean() > 5


def test_beta_zero_returns_the_content(folders, pretrained_file, tmp_path):
    res = run("--content", str(folders / "content" / "c1.png"), "--style", str(folders / "style" / "s0.jpg"),
              "--out", str(tmp_path / "g.png"), "--out-dir", str(tmp_path / "p"), "--stylizer", pretrained_file,
              "--size", "32", "--beta", "0")
    assert res.exit_code == 0, res.output
    got = np.asarray(Image.open(tmp_path / "p" / "c1__s0.png")).astype(int)
    assert np.abs(got - np.asarray(Image.open(folders / "content" / "c1.png")).astype(int)).max() <= 1


@pytest.mark.parametrize("case", ["missing content", "empty style folder", "corrupt style", "bad stylizer",
                                  "bad alpha"])
def test_bad_inputs_exit_2_naming_the_problem(case, folders, tmp_path):
    content, style, extra = str(folders / "content"), str(folders / "style"), []
    if case == "missing content":
        content, expect = str(tmp_path / "nope"), "nope does not exist"
    elif case == "empty style folder":
        (tmp_path / "empty").mkdir()
        style, expect = str(tmp_path / "empty"), "holds no images"
    elif case == "corrupt style":
        (tmp_path / "bad.jpg").write_bytes(b"not an image")
        style, expect = str(tmp_path / "bad.jpg"), "bad.jpg is not a readable image"
    elif case == "bad stylizer":
        extra, expect = ["--stylizer", "van-gogh-v9"], "'van-gogh-v9': not one of magenta-arbitrary-v1"
    else:
        extra, expect = ["--alpha", "1.5"], "--alpha and --beta must lie in [0, 1]"
    res = run("--content", content, "--style", style, "--out", str(tmp_path / "g.png"), *extra)
    assert res.exit_code == 2, res.output
    assert expect in res.output.replace("\n", " ") or expect in " ".join(res.output.split())
    assert not (tmp_path / "g.png").exists()


def test_random_stylizer_checkpoint_file(folders, tmp_path):
    from workloads.stylize.model import StyleTransferNet, save_stylizer
    torch.manual_seed(0)
    ckpt = tmp_path / "net.pt"
    save_stylizer(StyleTransferNet(width=0.25), ckpt)
    res = run("--content", str(folders / "content"), "--style", str(folders / "style"), "--out",
              str(tmp_path / "g.png"), "--stylizer", str(ckpt), "--size", "32", "--style-size", "32")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g.png").is_file()
