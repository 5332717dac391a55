"""The data plane's entries for a cell's training: one function per kind of run (an SSL
method, SIPL's pretext, a stylizer), each reading the cell's spec and the local files it was
handed, and reporting through its Callback. The Ray Train loops (orchestrator/train_worker.py)
and `sassl rehearse` call these same functions, so a rehearsal's steps are the run's steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .backends import configure_backends
from .callbacks import Callback
from .data.device_decode import DeviceDecodeStream
from .data.prepare import load_images, pretrain_data, reads_lazily
from .data.stream import ShardStream
from .spec import CellSpec, DataSpec, MonitorSpec
from .stylize.model import StyleTransferNet, load_stylizer
from .stylize.train import stylizer_arch, style_pool, train_stylizer

def _stylizer(spec: CellSpec, stylizer: Any) -> StyleTransferNet | None:
    """A stylizer given as a file is loaded and checked against the cell's architecture."""
    if stylizer is None or isinstance(stylizer, nn.Module):
        return stylizer
    return load_stylizer(str(stylizer), expected=stylizer_arch(spec.stylizer))


def _bank(bank: "torch.Tensor | str | Path | None") -> torch.Tensor | None:
    if bank is None or isinstance(bank, torch.Tensor):
        return bank
    return torch.load(bank, map_location="cpu", weights_only=True)


def decoded(images: "torch.Tensor | ShardStream", data: DataSpec, device: torch.device | str,
            decode_stream: Callable[[ShardStream], ShardStream] | None = None) -> "torch.Tensor | ShardStream":
    """A stream decoded where data.stream_decode says: on the worker's threads as it is, on the
    device, or by ``decode_stream`` (the orchestrator's Ray Data tasks); images in memory as they are."""
    if not isinstance(images, ShardStream) or data.stream_decode == "worker":
        return images
    if data.stream_decode == "device":
        return DeviceDecodeStream.like(images, device=torch.device(device))
    if decode_stream is None:
        raise ValueError("data.stream_decode: ray_data needs the orchestrator's Ray Data decoder")
    return decode_stream(images)


def train_ssl_cell(spec: CellSpec, *, cache_dir: str | Path | None, device: torch.device | str,
                   callback: Callback | None = None, resume: dict[str, Any] | None = None,
                   rank: int = 0, world: int = 1, threads: int = 1, wrap_model=None,
                   stylizer: StyleTransferNet | str | Path | None = None, style_bank: "torch.Tensor | str | Path | None" = None,
                   monitor: MonitorSpec | None = None,
                   decode_stream: Callable[[ShardStream], ShardStream] | None = None) -> nn.Module:
    """An SSL cell's pretraining on this rank (torch's backend flags set first, optim.deterministic): its images (in memory, or this rank's stream of
    packed shards, decoded where data.stream_decode says), SASSL's stylizer and style bank (objects
    or files), a search's monitor on rank 0; returns the trained method.

    ``decode_stream``: how the caller decodes a stream with Ray Data (``stream_decode:
    ray_data``), which the data plane cannot do itself."""
    from .pretrain import pretrain
    # before the first kernel: cuBLAS reads its workspace setting when it makes its handle
    configure_backends(torch.device(device), deterministic=spec.optim.deterministic)
    images = decoded(pretrain_data(spec, cache_dir, rank=rank, world=world, threads=threads), spec.data, device,
                     decode_stream)
    validation = None
    if monitor is not None and rank == 0:  # only rank 0 runs the monitor (workloads/pretrain.py)
        from .evaluation.monitor import ValidationMonitor
        validation = ValidationMonitor(spec, monitor, cache_dir=cache_dir, device=device)
    return pretrain(spec, images, callback=callback, device=device, resume=resume, wrap_model=wrap_model,
                    stylizer=_stylizer(spec, stylizer), style_bank=_bank(style_bank), monitor=validation)


def train_sipl_cell(spec: CellSpec, *, cache_dir: str | Path | None, device: torch.device | str,
                    callback: Callback | None = None, resume: dict[str, Any] | None = None,
                    threads: int = 1, monitor: MonitorSpec | None = None) -> nn.Module:
    """A SIPL cell's pretext training (one worker): its images in memory or streamed
    (data.loader), decoded on ``threads``; returns the trained SiplNet."""
    from .sipl.cell import SiplMonitor
    from .sipl.data import sipl_pretext_data
    from .sipl.train import pretrain_sipl
    configure_backends(torch.device(device), deterministic=spec.optim.deterministic)
    images = sipl_pretext_data(spec, cache_dir, threads=threads)
    validation = None
    if monitor is not None:
        validation = SiplMonitor(spec, spec.evaluation.targets[0], epochs=monitor.epochs, cache_dir=cache_dir,
                                 device=device)
    return pretrain_sipl(spec, images, callback=callback, device=device, resume=resume, monitor=validation)


def train_stylizer_cell(spec: CellSpec, *, cache_dir: str | Path, device: torch.device | str,
                        callback: Callback | None = None, resume: dict[str, Any] | None = None,
                        lazy: bool | None = None) -> StyleTransferNet:
    """The cell's stylizer trained (``spec.stylizer``): content and styles decoded first, or batch
    by batch when the cell's data.loader says they are too large (``lazy``: batch by batch
    regardless, as a rehearsal's few steps read them)."""
    from .stylize.loss_networks import build_loss_network
    configure_backends(torch.device(device), deterministic=spec.optim.deterministic)
    st, size = spec.stylizer, spec.stylizer.image_size

    def lazily(ref) -> bool:
        return lazy if lazy is not None else reads_lazily(spec.data, ref, size)
    content, _, _ = load_images(st.content_data, size, cache_dir, lazy=lazily(st.content_data))
    style = style_pool(st.style_data, size, str(cache_dir), lazy=any(lazily(ref) for ref in st.style_data))
    loss_net = build_loss_network(st.loss_network, weights=st.loss_weights, cache_dir=str(Path(cache_dir) / "weights"))
    return train_stylizer(st, content, style, loss_net, callback=callback, device=device, resume=resume)
