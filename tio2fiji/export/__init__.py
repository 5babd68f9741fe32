"""Networks for other software: a bioimage.io model package and ONNX files (U-Net:
``_bioimageio``; the Mask R-CNN's one-tile detection graph: ``_maskrcnn``)."""

from ._bioimageio import FORMATS, ONNX_OPSET, check_bioimageio, check_onnx, export, export_bioimageio, export_onnx
from ._maskrcnn import check_maskrcnn_onnx, write_maskrcnn_onnx

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "check_bioimageio",
    "check_onnx",
    "export",
    "export_bioimageio",
    "export_onnx",
    "check_maskrcnn_onnx",
    "write_maskrcnn_onnx",
]
