"""Issue 15: fuzzing the readers over TIFF tags and pixel data (Hypothesis, bounded, deterministic).

Every generated file either reads with a calibration that passes the one plausibility rule
(:func:`tio2fiji.io.pixel_size_problem`), or no calibration, or raises our own error
(:class:`tio2fiji.errors.Tio2FijiError`) - never another exception, never a silent wrong number.
The tags are written by tifffile and then patched in place, so that values tifffile's writer
refuses (a zero denominator, ResolutionUnit 0 or 65535) reach the readers too.
"""

import logging
import math
import string
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tio2fiji.errors import Tio2FijiError
from tio2fiji.io import pixel_size_problem, read_mask, read_pixel_size, read_sem

# deterministic and bounded: the same examples on every run, well under 30 s on one core
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def quiet_tifffile():
    """tifffile logs every broken tag it skips; the readers' own errors are what is tested."""
    log = logging.getLogger("tifffile")
    before = log.level
    log.setLevel(logging.CRITICAL)
    yield
    log.setLevel(before)

CZ_SEM, FEI_HELIOS, FEI_SFEG = 34118, 34682, 34680
ASCII = string.ascii_letters + string.digits + " .,:;=+-_[]()/\\µ"

numbers = st.one_of(
    st.sampled_from(["0", "-0", "nan", "NaN", "inf", "-inf", "1e308", "1e-320", "7.343750e-009",
                     "-7.3e-9", "5", "1e-15", "abc", "", "0x10", "1,5"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=1e-13, max_value=1e-2).map(lambda v: f"{v:e}"),
)
units = st.sampled_from(["nm", "µm", "um", "micron", "m", "pm", "mm", "cm", "inch", "pixel", "parsec",
                         "", "NM", "\\u00B5m", "A"])
rational = st.tuples(
    st.one_of(st.sampled_from([0, 1, 72, 96, 150, 300, 600, 1200, 25400, 10**6, 2 * 10**6, 2**32 - 1]),
              st.integers(0, 2**32 - 1)),
    st.one_of(st.sampled_from([0, 1, 2, 10, 10**6]), st.integers(0, 2**32 - 1)),
)


def _ascii(text):
    return text.encode("ascii", "replace").decode("ascii")


@st.composite
def cz_sem_payloads(draw):
    head = draw(st.lists(numbers, max_size=8))
    lines = list(head)
    for key, label in (("AP_PIXEL_SIZE", "Pixel Size"), ("AP_IMAGE_PIXEL_SIZE", "Image Pixel Size")):
        if draw(st.booleans()):
            sep = draw(st.sampled_from([" = ", ":", " "]))
            lines += [key, f"{label}{sep}{draw(numbers)} {draw(units)}".rstrip()]
    if draw(st.booleans()):
        lines.append(draw(st.text(alphabet=ASCII + "\r\n", max_size=40)))
    return _ascii("\r\n".join(lines) + "\r\n")


@st.composite
def fei_payloads(draw):
    section = draw(st.sampled_from(["[Scan]", "[scan]", "[User]", "", "[Scan"]))
    key = draw(st.sampled_from(["PixelWidth", "pixelwidth", "PixelHeight"]))
    return _ascii(f"[User]\r\nDate=01/01/2024\r\n{section}\r\n{key}={draw(numbers)}\r\n")


@st.composite
def descriptions(draw):
    kind = draw(st.sampled_from(["imagej", "text", "none"]))
    if kind == "none":
        return None
    if kind == "text":
        return _ascii(draw(st.text(alphabet=ASCII + "\n", max_size=60))) or None
    extra = draw(st.sampled_from(["", "spacing=0\n", "images=1\n", "xorigin=nan\n"]))
    return _ascii(f"ImageJ=1.54f\nunit={draw(units)}\n{extra}")


@st.composite
def pixels(draw):
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(draw(st.sampled_from(["uint8", "uint16", "int8", "int16", "int32", "uint32",
                                           "float32", "float64", "bool"])))
    h, w = draw(st.sampled_from([(1, 1), (1, 7), (7, 1), (2, 2), (8, 8), (16, 24), (40, 32)]))
    channels = draw(st.sampled_from([None, None, None, 3, 4]))
    shape = (h, w) if channels is None else (h, w, channels)
    fill = draw(st.sampled_from(["random", "constant", "binary", "labels"]))
    if dtype.kind == "b":
        arr = rng.random(shape) > 0.5
    elif dtype.kind == "f":
        arr = rng.normal(0.5, 0.3, shape).astype(dtype)
        if draw(st.booleans()):
            arr.flat[rng.integers(0, arr.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)
    if fill == "constant":
        arr = np.full(shape, arr.flat[0], dtype)
    elif fill == "binary":
        arr = (rng.random(shape) > 0.7).astype(dtype)
    elif fill == "labels" and dtype.kind in "ui":
        arr = rng.integers(0, 4, shape).astype(dtype)
    if channels is not None and draw(st.booleans()):  # gray stored as RGB(A)
        arr = np.repeat(arr[..., :1], channels, axis=-1)
    return arr


def _patch(path: Path, code: int, fmt: str, value) -> None:
    """Overwrite the value of tag ``code`` in place (the writer refuses some of the values)."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags.get(code)
        if tag is None:
            return
        offset = tag.valueoffset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack("<" + fmt, *value))


@st.composite
def tiff_files(draw):
    """(pixels, write keywords, patches): everything a fuzzed file is made of."""
    arr = draw(pixels())
    kw = {"extratags": []}
    if arr.ndim == 3:
        kw["photometric"] = "rgb"
    elif draw(st.booleans()):
        kw["photometric"] = draw(st.sampled_from(["minisblack", "miniswhite"]))
    desc = draw(descriptions())
    if desc is not None:
        kw["description"] = desc
        kw["metadata"] = None
    if draw(st.booleans()):
        kw["extratags"].append((CZ_SEM, "s", 0, draw(cz_sem_payloads()), True))
    if draw(st.booleans()):
        code = draw(st.sampled_from([FEI_HELIOS, FEI_SFEG]))
        kw["extratags"].append((code, "s", 0, draw(fei_payloads()), True))
    if draw(st.booleans()):  # raw bytes as a CZ_SEM payload
        kw["extratags"] = [(CZ_SEM, "B", 0, draw(st.binary(min_size=1, max_size=64)), True)]
    patches = []
    if draw(st.booleans()):
        kw["resolution"] = (1.0, 1.0)
        kw["resolutionunit"] = 2
        patches.append((282, "II", draw(rational)))
        patches.append((283, "II", draw(rational)))
        patches.append((296, "H", (draw(st.sampled_from([0, 1, 2, 3, 4, 65535])),)))
    return arr, kw, patches


def _check_calibration(ps, source):
    if ps is not None:
        assert isinstance(ps, float) and math.isfinite(ps)
        assert pixel_size_problem(ps, source) is None, (ps, source)
    assert isinstance(source, str) and source


@pytest.mark.slow  # ~8 s: 300 files written and read three times
@FUZZ
@given(tiff_files())
def test_readers_give_a_plausible_calibration_or_our_error(spec):
    arr, kw, patches = spec
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.tif"
        try:
            tifffile.imwrite(path, arr, **kw)
        except Exception:  # a combination tifffile itself refuses to write: nothing to read
            return
        for code, fmt, value in patches:
            _patch(path, code, fmt, value)
        try:
            sem = read_sem(path)
        except Tio2FijiError:
            pass
        else:
            assert sem.data.ndim == 2 and sem.data.size > 0
            _check_calibration(sem.pixel_size_m, sem.pixel_size_source)
            assert 0 <= sem.data_bar_rows < sem.data.shape[0]
        try:
            mask = read_mask(path)
        except Tio2FijiError:
            pass
        else:
            assert mask.dtype == bool and mask.ndim == 2
        for strict in (True, False):
            try:
                _check_calibration(*read_pixel_size(path, strict=strict))
            except Tio2FijiError:
                pass


@FUZZ
@given(st.binary(min_size=0, max_size=48), st.integers(0, 2**16))
def test_broken_bytes_after_a_valid_header_are_our_error(tail, seed):
    # a valid little-endian TIFF header pointing at an IFD of random bytes
    data = b"II*\x00" + struct.pack("<I", 8) + tail
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bytes.tif"
        path.write_bytes(data)
        for read in (read_sem, read_mask, read_pixel_size):
            try:
                read(path)
            except Tio2FijiError:
                pass
