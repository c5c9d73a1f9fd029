"""Network building blocks shared by the methods."""

from .blocks import count_parameters, init_kaiming
from .unet import UNet

__all__ = ["UNet", "count_parameters", "init_kaiming"]
