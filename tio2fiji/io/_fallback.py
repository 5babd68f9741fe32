"""An image's calibration after :func:`read_sem`: the user's pixel size, the burned-in bar, or a refusal.

:func:`calibrate_missing` is what ``tio2fiji analyze`` and ``info`` do after :func:`read_sem`: the
pixel size the user gave (``--pixel-size``) overrides the file's, as in every command (the source,
:func:`tio2fiji.io.given_source`, names what it replaced); without one, an image whose file has no
calibration gets the microscope's burned-in field width or scale bar
(:func:`tio2fiji.io.read_burned_in_calibration`, Tesseract), else physical units are refused unless
lengths in pixels were asked for. The source of the value is named in every output. A file whose
pixels are not square (:data:`._calibration.NOT_SQUARE`) gets no burned-in reading: a scale bar
gives one axis, and using it for both would square the pixels silently.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError
from ._calibration import GIVEN, NOT_SQUARE, _format_length, given_source, pixel_size_problem
from ._sem import SemImage

__all__ = ["BURNED_IN_SOURCES", "calibrate_missing"]

#: Source names of a pixel size read from the pixels (rank 2 in :func:`calibration_rank`).
BURNED_IN_SOURCES = ("burned-in field width", "burned-in scale bar")


def calibrate_missing(sem: SemImage, pixel_size_m: float | None = None, allow_pixels: bool = False,
                      burned_in: bool = True) -> SemImage:
    """``sem`` with the user's pixel size, or with one when its file has none; else ``sem`` itself.

    Parameters
    ----------
    sem : SemImage
        From :func:`tio2fiji.io.read_sem`.
    pixel_size_m : float, optional
        The user's pixel size (metres): it overrides the file's calibration and the burned-in bar
        (``pixel_size_source`` from :func:`tio2fiji.io.given_source`, e.g. ``"--pixel-size
        (overrides the file's 7.34375 nm)"``; a note names the value not used).
    allow_pixels : bool
        Measure in pixels when nothing gives a pixel size, instead of refusing.
    burned_in : bool
        Read the burned-in field width or scale bar (Tesseract) first.

    Returns
    -------
    SemImage
        With ``pixel_size_source`` ``"burned-in field width"`` / ``"burned-in scale bar"`` (the text
        read is in ``calibration_where``), ``"--pixel-size (...)"``, or unchanged in pixels with a
        note.

    Raises
    ------
    InputError
        Nothing gives a pixel size and ``allow_pixels`` is False; a bad ``pixel_size_m``.
    """
    if pixel_size_m is not None and not sem.pixel_size_source.startswith(GIVEN):
        # the user's value overrides any other source, in every command (given_source)
        problem = pixel_size_problem(pixel_size_m)
        if problem:
            raise InputError(f"{sem.path}: the given pixel size {pixel_size_m!r} is not valid ({problem}).")
        was = (f"{sem.pixel_size_m * 1e9:.6g} nm ({sem.pixel_size_source}) not used" if sem.calibrated
               else f"none ({sem.pixel_size_source.removeprefix('none: ')})")
        return replace(sem, pixel_size_m=float(pixel_size_m),
                       pixel_size_source=given_source(pixel_size_m, sem.pixel_size_m), calibration_where=GIVEN,
                       notes=[*sem.notes, f"pixel size {float(pixel_size_m) * 1e9:.6g} nm from --pixel-size; "
                                          f"the file's calibration {was}"])
    if sem.calibrated:
        return sem
    why = sem.pixel_size_source.removeprefix("none: ")
    tried = [f"metadata: {why}"]
    if NOT_SQUARE in why:
        burned_in = False
        tried.append("the burned-in scale bar is not read (it gives the width of a pixel only)")
    if burned_in:
        from ._scalebar import read_burned_in_calibration

        try:
            found = read_burned_in_calibration(sem.data, data_bar_rows=sem.data_bar_rows or None)
        except InputError as exc:  # Tesseract missing: say so, fall through to the other choices
            if not allow_pixels and pixel_size_m is None:
                raise
            found, tried = None, [*tried, str(exc)]
        if found is not None:
            source = f"burned-in {found.method}"
            return replace(sem, pixel_size_m=found.pixel_size_m, pixel_size_source=source,
                           calibration_where=f"{found.detail} (OCR text {found.text!r}, Tesseract)",
                           notes=[*sem.notes, f"no calibration in the file ({why}); read from the "
                                              f"burned-in {found.method}: {_format_length(found.pixel_size_m)}"])
        tried.append("no burned-in field width or scale bar could be read")
    if allow_pixels:
        return replace(sem, notes=[*sem.notes, f"lengths in pixels (--allow-pixels): {'; '.join(tried)}"])
    raise InputError(f"{sem.path}: no pixel size ({'; '.join(tried)}); give it with --pixel-size "
                     f"(e.g. 7.3nm), or measure in pixels with --allow-pixels.")
