"""Plots are built as matplotlib Figures without pyplot (no global figure registry to close, safe
in threads), returned by the ``*_figure`` functions so that what a plot draws can be read back
from its Axes; ``save`` writes the PNG users get and ``pixels`` renders a figure exactly as
``save`` would, to compare a written PNG with the figure it should show."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

SAVE = {"dpi": 120, "bbox_inches": "tight"}  # every results/ plot but the two with their own layout
UNCROPPED = {"bbox_inches": None}  # those two: the figure's own tight layout, not cropped again


def save(fig: Figure, path: str | Path, **options) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made); ``options`` override SAVE's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **(SAVE | options))
    return path


def pixels(fig: Figure | str | Path, **options) -> np.ndarray:
    """RGBA pixels (uint8, H × W × 4) of a PNG file, or of a figure rendered as ``save`` writes it."""
    if isinstance(fig, Figure):
        buf = BytesIO()
        fig.savefig(buf, format="png", **(SAVE | options))
        buf.seek(0)
        fig = buf
    return np.asarray(Image.open(fig).convert("RGBA"))
