"""Runs over many images: the per-file runner (``_batch``: ``measure``, ``distribution``, ``segment``),
the scoring of a model (``_evaluate``), the main job (``_analyze``) with its options (``_options``),
its per-image parts (``_parts``) and its Dask workers (``_cluster``).

Each public name is imported from its module on first use (as :mod:`tio2fiji` does), so that
``from tio2fiji.run import AnalysisOptions`` (``tio2fiji analyze --help``) loads no torch.
"""

from .. import _lazy_face

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    **dict.fromkeys(["BatchResult", "MaskInput", "run_files", "unique_names", "failure_message", "run_metadata",
                     "run_versions", "software_versions", "load_mask_input", "measure_files",
                     "distribution_files", "segment_files", "concat_tables", "run_folder", "segment_outputs"],
                    "_batch"),
    **dict.fromkeys(["select_pairs", "evaluate_model"], "_evaluate"),
    **dict.fromkeys(["cores", "open_client", "start_client", "run_tasks", "share", "shared", "worker_cache",
                     "worker_device", "ALLOWED_FAILURES"], "_cluster"),
    **dict.fromkeys(["PLOTS", "WRITTEN_SUFFIXES", "gather_images", "panel_positions", "write_part",
                     "read_part", "reusable_part", "earlier_parts", "image_files", "run_outputs", "other_parts",
                     "merge_parts", "pooled_sizes"], "_parts"),
    **dict.fromkeys(["AnalysisOptions", "MAX_PANELS"], "_options"),
    **dict.fromkeys(["analyze_images", "analyze_one", "AnalysisResult", "warm_up"], "_analyze"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = _lazy_face(globals(), {name: f"{__name__}.{home}" for name, home in _EXPORTS.items()})
