"""Segmentation networks. ``models.unet``: the U-Net family of the thesis."""

from .unet import CONFIGS, ENCODERS, build_config, build_unet, parse_config

__all__ = ["CONFIGS", "ENCODERS", "build_config", "build_unet", "parse_config"]
