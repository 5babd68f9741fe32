"""numpy arrays to ImageJ ``ImagePlus`` objects and back."""

from __future__ import annotations

import numpy as np

from ..io import as_binary_mask, pixel_size_nm
from ._jvm import start_imagej


def _as_binary_mask(array, name="mask") -> np.ndarray:
    return as_binary_mask(array, name, hint="The ImageJ backend measures binary masks only; for a "
                          "label image use the native backend (tio2fiji.particles.measure) or "
                          "`labels > 0`.")


def to_imageplus(array, title="mask", pixel_size_m=None):
    """Push a binary mask into ImageJ as an 8-bit ``ImagePlus`` (0 background, 255 particles).

    Parameters
    ----------
    array : (H, W) array_like
        bool, or numeric with zeros and one foreground value (e.g. 0/255, 0/1).
    title : str
        ImagePlus title.
    pixel_size_m : float, optional
        Pixel size in metres; sets the Calibration to pixelWidth = pixelHeight in nm, unit "nm".

    Returns
    -------
    ij.ImagePlus

    Raises
    ------
    InputError
        Not a 2-D binary mask, or a bad pixel size.
    """
    mask = _as_binary_mask(array, title)
    pw = pixel_size_nm(pixel_size_m)
    start_imagej()
    import jpype

    height, width = mask.shape
    data = mask.astype(np.uint8) * np.uint8(255)
    # One buffer copy into a Java byte[] (per-pixel calls would take seconds).
    pixels = jpype.JArray(jpype.JByte)(data.view(np.int8).ravel())
    ip = jpype.JClass("ij.process.ByteProcessor")(width, height, pixels)
    imp = jpype.JClass("ij.ImagePlus")(str(title), ip)
    if pw is not None:
        cal = imp.getCalibration()
        cal.pixelWidth = pw
        cal.pixelHeight = pw
        cal.setUnit("nm")
    return imp


def from_imageplus(imp) -> np.ndarray:
    """Pixels of an ImagePlus's current slice as a numpy array (uint8, uint16, float32 or RGB)."""
    start_imagej()
    ip = imp.getProcessor()
    shape = (int(ip.getHeight()), int(ip.getWidth()))
    bits = int(imp.getBitDepth())
    dtype = {8: np.int8, 16: np.int16, 32: np.float32, 24: np.int32}[bits]
    arr = np.array(ip.getPixels(), dtype=dtype).reshape(shape)
    if bits == 8:
        return arr.view(np.uint8)
    if bits == 16:
        return arr.view(np.uint16)
    if bits == 24:  # packed 0xRRGGBB
        packed = arr.view(np.uint32)
        return np.stack([(packed >> s) & 0xFF for s in (16, 8, 0)], axis=-1).astype(np.uint8)
    return arr
