"""What the numbers were computed on: the same code gives different figures on machines whose
PyTorch picks different CPU kernels (AVX2 vs AVX-512 reductions sum in another order), so
every run records these beside its results."""
from __future__ import annotations

import platform
from pathlib import Path

import torch


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_params(prefix: str) -> dict[str, str]:
    """{f"{prefix}.cpu_capability": "AVX512", ...}: the CPU kernels torch dispatches to, the CPU,
    torch's version and thread count, and the GPU if one is used."""
    out = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": _cpu_model(),
           "torch": torch.__version__, "threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return {f"{prefix}.{k}": v for k, v in out.items()}
