"""Type stub of the lazily imported public face (``_EXPORTS``) for IDEs and type checkers;
tests/test_architecture.py keeps it equal to ``_EXPORTS``."""

from .distribution import (
    biovoxxel_test,
    clark_evans_test,
    distribution_table,
    envelopes,
    monte_carlo_test,
    test_distribution,
    ultimate_points,
)
from .imagej import compare_tables, measure_imagej, run_macro
from .instances import connected_components, labels_from_probability, labels_to_separated_mask, watershed_split
from .io import (
    SemImage,
    mask_for_image,
    read_labels,
    read_mask,
    read_mask_or_labels,
    read_sem,
    write_labels,
    write_mask,
)
from .metrics import evaluate_images, match_instances
from .models import load_model
from .particles import label_particles, measure, read_roi_zip, write_roi_zip
from .predict import Segmentation, predict_probability, segment
from .report import bootstrap_ci, summary_table
from .run import analyze_images, distribution_files, evaluate_model, measure_files, segment_files
from .training import build_dataset, train_maskrcnn, train_unet

__version__: str
__all__ = [
    "__version__",
    "SemImage",
    "read_sem",
    "read_mask",
    "read_labels",
    "read_mask_or_labels",
    "mask_for_image",
    "write_mask",
    "write_labels",
    "connected_components",
    "watershed_split",
    "labels_from_probability",
    "labels_to_separated_mask",
    "measure",
    "label_particles",
    "measure_imagej",
    "run_macro",
    "compare_tables",
    "test_distribution",
    "ultimate_points",
    "clark_evans_test",
    "monte_carlo_test",
    "biovoxxel_test",
    "envelopes",
    "distribution_table",
    "evaluate_images",
    "match_instances",
    "summary_table",
    "bootstrap_ci",
    "write_roi_zip",
    "read_roi_zip",
    "load_model",
    "segment",
    "predict_probability",
    "Segmentation",
    "build_dataset",
    "train_unet",
    "train_maskrcnn",
    "measure_files",
    "distribution_files",
    "segment_files",
    "analyze_images",
    "evaluate_model",
]
