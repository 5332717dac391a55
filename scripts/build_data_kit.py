#!/usr/bin/env python
"""Build the compact embedded data kit (workloads/data/assets/) from the shared image folder.

Writes cifar10.npz (JPEG bytes copied verbatim), dtd.npz and paintings.npz (shorter side
downscaled to --style-size, LANCZOS, JPEG q90) and PROVENANCE.json. The packs are written
byte-reproducibly (sorted inputs, fixed zip timestamps), so re-running with the same Pillow
version gives the same sha256 digests. Read them with workloads.data.packed.PackedImages.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shlex
import sys
import zipfile
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
JPEG_QUALITY = 90
# Fixed zip entry timestamp: np.savez stamps entries with the current time, which would make
# the pack digests change on every rebuild.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="../shared/data",
                   help="shared data folder (relative paths are taken from the repo root)")
    p.add_argument("--out", default="workloads/data/assets",
                   help="output folder (relative paths are taken from the repo root)")
    p.add_argument("--style-size", type=int, default=64,
                   help="shorter side in px for dtd/paintings (never upscaled)")
    return p.parse_args(argv)


def resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


def downscale_jpeg(raw: bytes, short_side: int) -> bytes:
    """Shorter side -> short_side (aspect kept, LANCZOS, RGB, JPEG q90); smaller images kept verbatim."""
    im = Image.open(io.BytesIO(raw))
    w, h = im.size
    scale = short_side / min(w, h)
    if scale >= 1 and im.mode == "RGB" and im.format == "JPEG":
        return raw
    im = im.convert("RGB")
    if scale < 1:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def write_pack(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez layout (one .npy member per array, np.load reads it), with fixed timestamps.

    `data` (JPEG bytes, incompressible) is stored; the other members are deflated because
    unicode `names` are UTF-32 in .npy and would otherwise add ~2.5 MB to the CIFAR pack.
    """
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED if key == "data" else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checksums(source: Path) -> dict[str, str]:
    sums = source / "SHA256SUMS"
    if not sums.exists():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip().lstrip("*")] = digest
    return out


def upstream(source: Path, folder: str) -> dict | None:
    """Repo + commit of `folder` from SOURCES.md (section '## <folder>/')."""
    doc = source / "SOURCES.md"
    if not doc.exists():
        return None
    for section in re.split(r"^## ", doc.read_text(), flags=re.M)[1:]:
        if section.startswith(f"{folder}/"):
            repo = re.search(r"Source repository:\s*\*\*([^*]+)\*\*", section)
            commit = re.search(r"commit\s*`([0-9a-f]{40})`", section)
            return {"repository": f"https://github.com/{repo.group(1)}" if repo else None,
                    "commit": commit.group(1) if commit else None,
                    "details": "SOURCES.md, section '" + section.splitlines()[0].strip() + "'"}
    return None


def build_pack(source: Path, folder: str, files: list[Path], labels: list[int], split: list[int],
               classes: list[str], transform, checksums: dict[str, str]) -> tuple[dict, dict]:
    names, blobs = [], []
    src_digest = hashlib.sha256()  # over: path, NUL, 8-byte size, contents, for each file in order
    mismatched = []
    for f in files:
        rel = f.relative_to(source).as_posix()
        raw = f.read_bytes()
        if checksums and checksums.get(rel) != hashlib.sha256(raw).hexdigest():
            mismatched.append(rel)
        src_digest.update(rel.encode() + b"\0" + len(raw).to_bytes(8, "little") + raw)
        names.append(rel)
        blobs.append(transform(raw))
    if mismatched:
        sys.exit(f"{len(mismatched)} files of {folder}/ disagree with SHA256SUMS, e.g. {mismatched[:3]}")
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    arrays = {
        "data": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": offsets,
        "labels": np.asarray(labels, dtype=np.int64),
        "split": np.asarray(split, dtype=np.uint8),
        "classes": np.asarray(classes, dtype=np.str_),
        "names": np.asarray(names, dtype=np.str_),
    }
    info = {
        "source_folder": folder,
        "file_count": len(files),
        "source_sha256": src_digest.hexdigest(),
        "source_checked_against_SHA256SUMS": bool(checksums),
    }
    return arrays, info


def labelled_files(root: Path) -> tuple[list[Path], list[str]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    return sorted(root.glob("*/*.jpg")), classes


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source, out = resolve(args.source), resolve(args.out)
    if not source.is_dir():
        sys.exit(f"source folder {source} not found (see --source)")
    out.mkdir(parents=True, exist_ok=True)
    checksums = read_checksums(source)
    style_rule = (f"shorter side -> {args.style_size} px if larger (aspect kept, round() per side), "
                  f"Pillow Image.LANCZOS, convert RGB, JPEG quality {JPEG_QUALITY}; "
                  "smaller images copied verbatim")
    provenance: dict = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "arguments": {"source": str(source), "out": str(out), "style_size": args.style_size},
        "pillow_version": PIL.__version__,
        "numpy_version": np.__version__,
        "source_digest_rule": "sha256 over each source file in pack order: relative path (utf-8), "
                              "NUL, size as 8-byte little-endian, file bytes",
        "sources_md_sha256": sha256_file(source / "SOURCES.md") if (source / "SOURCES.md").exists() else None,
        "packs": {},
    }

    # CIFAR-10: bytes verbatim, train (split 0) and test (split 1).
    train_files, classes = labelled_files(source / "cifar10" / "train")
    test_files, _ = labelled_files(source / "cifar10" / "test")
    files = sorted(train_files + test_files)
    jobs = [("cifar10", "cifar10", files, classes,
             [0 if f.parts[-3] == "train" else 1 for f in files], lambda raw: raw,
             "none: JPEG bytes copied byte-for-byte")]
    # DTD: labelled by class folder, downscaled.
    files, classes = labelled_files(source / "dtd")
    jobs.append(("dtd", "dtd", files, classes, [0] * len(files),
                 lambda raw: downscale_jpeg(raw, args.style_size), style_rule))
    # Paintings: unlabelled, downscaled.
    files = sorted((source / "paintings").glob("*.jpg"))
    jobs.append(("paintings", "paintings", files, [], [0] * len(files),
                 lambda raw: downscale_jpeg(raw, args.style_size), style_rule))

    for pack, folder, files, classes, split, transform, rule in jobs:
        if not files:
            sys.exit(f"no .jpg files under {source / folder}")
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[f.parent.name] for f in files] if classes else [-1] * len(files)
        arrays, info = build_pack(source, folder, files, labels, split, classes, transform, checksums)
        path = out / f"{pack}.npz"
        write_pack(path, arrays)
        info.update(resize_rule=rule, pack=path.name, pack_bytes=path.stat().st_size,
                    pack_sha256=sha256_file(path), upstream=upstream(source, folder))
        provenance["packs"][pack] = info
        print(f"{path.name}: {len(files)} images, {info['pack_bytes'] / 2**20:.2f} MiB")

    (out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {out / 'PROVENANCE.json'}")


if __name__ == "__main__":
    main()
