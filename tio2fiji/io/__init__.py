"""Reading SEM images and masks, their calibration, and writing outputs safely.

The rules that decide which numbers reach the analysis live here:

* **Calibration** (physical pixel size, always in metres: ``pixel_size_m``) from the image's own
  metadata: the vendors' conventions through rosettasciio (:mod:`._vendor`), ImageJ, a TIFF
  resolution (:func:`read_calibration`); else none (lengths in pixels, and the source says why).
  :func:`calibrate_missing` then reads the burned-in field width or scale bar (Tesseract), or
  refuses physical units. The user's pixel size (``--pixel-size``) overrides every other source
  in every command, and the source says what it replaced (:func:`given_source`).
  Every pixel size passes one plausibility rule (:func:`pixel_size_problem`): a broken microscope
  tag is an error, a print/screen dpi is never a calibration; :func:`calibration_rank` orders the
  sources (given > microscope tag > ImageJ > TIFF resolution). Pixels that are not square give no
  calibration from any source (:data:`NOT_SQUARE` in the source says so), never a squared one.
* **Palette images** are read as their raw indices, which are the detector values
  (:mod:`tio2fiji.io._pixels`).
* **Float images** are the signal one explicit rule names (:mod:`tio2fiji.io._pixels`): integer
  values 0-255 the 8-bit signal, 0-65535 the 16-bit signal, values within ``[0, 1]`` a ``[0, 1]``
  signal; any other float image is refused, never min-max stretched.
* **Data bar**: detected from the image content (:func:`detect_data_bar`: dark or light panels;
  :func:`detect_overlay_bar`: panels in a palette's overlay colours) or the vendor's metadata
  (FEI/Thermo) unless given; the analysed area excludes it.
* **Annotations** inside the image area (burned-in scale bar or text, palette overlay colours):
  :func:`detect_annotations`; ``SemImage.annotation_mask``, left out of the analysis.
* **Masks and label images**: :func:`read_mask` (binary), :func:`read_labels`,
  :func:`read_mask_or_labels`, all by their pixel values as ImageJ reads them (an inverting LUT or
  a min-is-white photometric changes only the display); :func:`mask_for_image` crops a mask to its
  image's analysed area.
* **Files**: :func:`pair_files` / :func:`find_image_for_mask` pair masks with their images;
  every output goes through :func:`atomic_write` (temporary name, then rename).
* **Output folders**: :func:`check_output_dir` before anything is computed, :class:`RunFolder`
  (lock, ``run_manifest.json``, the earlier run's files replaced) while a run writes.
"""

from ._annotations import detect_annotations, paint_out
from ._calibration import (
    GIVEN,
    NOT_SQUARE,
    PIXEL_SIZE_RANGE_M,
    RESOLUTION_MAX_PIXEL_M,
    CalibrationReading,
    calibration_rank,
    choose_calibration,
    given_source,
    parse_length,
    pixel_size_nm,
    pixel_size_problem,
    read_calibration,
    read_calibration_details,
    read_pixel_size,
    read_pixel_size_details,
)
from ._fallback import BURNED_IN_SOURCES, calibrate_missing
from ._files import (
    IMAGE_SUFFIXES,
    MASK_SUFFIX,
    atomic_write,
    file_sha256,
    find_image_for_mask,
    pair_files,
    write_csv,
    write_json,
)
from ._masks import (
    as_binary_mask,
    check_same_shape,
    mask_for_image,
    mask_from_array,
    mask_or_labels,
    read_labels,
    read_mask,
    read_mask_or_labels,
    write_labels,
    write_mask,
)
from ._outdir import LOCK, MANIFEST, RunFolder, check_output_dir, read_manifest
from ._sem import SemImage, analysed_area, detect_data_bar, detect_overlay_bar, read_sem
from ._vendor import AxesReading, read_vendor_axes

__all__ = [
    "AxesReading", "BURNED_IN_SOURCES", "detect_annotations", "paint_out",
    "CalibrationReading", "calibrate_missing", "detect_overlay_bar",
    "read_calibration_details", "read_pixel_size_details", "read_vendor_axes",
    "LOCK", "MANIFEST", "RunFolder", "check_output_dir", "read_manifest",
    "NOT_SQUARE", "PIXEL_SIZE_RANGE_M", "RESOLUTION_MAX_PIXEL_M", "calibration_rank", "choose_calibration",
    "GIVEN", "given_source", "pixel_size_problem",
    "IMAGE_SUFFIXES", "MASK_SUFFIX", "SemImage", "analysed_area", "as_binary_mask", "atomic_write",
    "check_same_shape", "detect_data_bar", "file_sha256", "find_image_for_mask", "mask_for_image",
    "mask_from_array", "mask_or_labels", "pair_files", "parse_length", "pixel_size_nm", "read_calibration",
    "read_labels", "read_mask", "read_mask_or_labels", "read_pixel_size", "read_sem", "write_csv",
    "write_json", "write_labels", "write_mask",
]
