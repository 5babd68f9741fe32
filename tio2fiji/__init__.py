"""tio2fiji: SEM images of TiO2 nanoparticles to ImageJ-exact particle statistics.

The main functions are available from the package itself, as ``skimage.measure`` exposes its
functions; each lives in one module (named in ``_EXPORTS``) and is imported on first use, so that
``import tio2fiji`` is cheap and never loads torch or a JVM::

    import tio2fiji
    sem = tio2fiji.read_sem("examples/data/SEM/1908248.tif")
    seg = tio2fiji.segment("default", sem)
    table = tio2fiji.measure(seg.labels, pixel_size_m=sem.pixel_size_m, connectivity=4)

See CONTRIBUTING.md for the map of the modules.
"""

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    # reading SEM images, masks and label images; writing masks and labels
    "SemImage": "tio2fiji.io", "read_sem": "tio2fiji.io", "read_mask": "tio2fiji.io",
    "read_labels": "tio2fiji.io", "read_mask_or_labels": "tio2fiji.io",
    "mask_for_image": "tio2fiji.io", "write_mask": "tio2fiji.io", "write_labels": "tio2fiji.io",
    # network output -> particles
    "connected_components": "tio2fiji.instances", "watershed_split": "tio2fiji.instances",
    "labels_from_probability": "tio2fiji.instances",
    "labels_to_separated_mask": "tio2fiji.instances",
    # ImageJ-exact measurement, natively and in a real ImageJ
    "measure": "tio2fiji.particles", "label_particles": "tio2fiji.particles",
    "measure_imagej": "tio2fiji.imagej", "run_macro": "tio2fiji.imagej",
    "compare_tables": "tio2fiji.imagej",
    # spatial distribution
    "test_distribution": "tio2fiji.distribution", "ultimate_points": "tio2fiji.distribution",
    "clark_evans_test": "tio2fiji.distribution", "monte_carlo_test": "tio2fiji.distribution",
    "biovoxxel_test": "tio2fiji.distribution", "envelopes": "tio2fiji.distribution",
    "distribution_table": "tio2fiji.distribution",
    # scores and summaries
    "evaluate_images": "tio2fiji.metrics", "match_instances": "tio2fiji.metrics",
    "summary_table": "tio2fiji.report",
    "bootstrap_ci": "tio2fiji.report",
    # ImageJ ROI sets
    "write_roi_zip": "tio2fiji.particles", "read_roi_zip": "tio2fiji.particles",
    # networks: model files, inference, training
    "load_model": "tio2fiji.models", "segment": "tio2fiji.predict",
    "predict_probability": "tio2fiji.predict", "Segmentation": "tio2fiji.predict",
    "build_dataset": "tio2fiji.training", "train_unet": "tio2fiji.training",
    "train_maskrcnn": "tio2fiji.training",
    # whole jobs over many files
    "measure_files": "tio2fiji.run", "distribution_files": "tio2fiji.run",
    "segment_files": "tio2fiji.run", "analyze_images": "tio2fiji.run",
    "evaluate_model": "tio2fiji.run",
}

__all__ = ["__version__", *_EXPORTS]


def _lazy_face(namespace: dict, exports: dict):
    """``(__getattr__, __dir__)`` of a package whose public names are imported on first use
    (PEP 562): ``exports`` maps each name to the absolute name of the module that defines it;
    ``namespace`` is the package's ``globals()``. Used here and by :mod:`tio2fiji.run`."""

    def __getattr__(name):
        home = exports.get(name)
        if home is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


__getattr__, __dir__ = _lazy_face(globals(), _EXPORTS)
