"""Fast arbitrary style transfer network (Ghiasi et al. 2017) used by SASSL."""

from .model import (
    NUM_CIN_LAYERS,
    VALID_STYLIZED_LAYERS,
    ConditionalInstanceNorm,
    StylePredictor,
    StyleTransferNet,
    StyleTransformer,
    load_stylizer,
    register_predictor_trunk,
    save_stylizer,
    validate_stylized_layers,
)
from . import magenta  # noqa: F401,E402 - registers the pretrained port's predictor trunk

__all__ = [
    "NUM_CIN_LAYERS",
    "VALID_STYLIZED_LAYERS",
    "ConditionalInstanceNorm",
    "StylePredictor",
    "StyleTransformer",
    "StyleTransferNet",
    "load_stylizer",
    "register_predictor_trunk",
    "save_stylizer",
    "validate_stylized_layers",
]
