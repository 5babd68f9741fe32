"""Large images (issue 15, case 12): the tiled prediction streams its tiles and holds no full-size
float64 copies, with the same result as whole-image accumulators.

The memory limits are stated in :func:`tio2fiji.predict.predict_maps` (and README); the 4000×4000
measurement of the whole ``segment`` is ``benchmarks/speed/large_images.py`` (any size; too slow for the suite).
"""

import tracemalloc

import numpy as np
import pytest
import torch

from tio2fiji.predict import predict_maps
from tio2fiji.transforms import TILE, axis_positions, normalize_for_network, tile_weights


def _net(channels=1, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(),
                               torch.nn.Conv2d(4, channels, 3, padding=1)).eval()


def _whole_image_reference(model, image, overlap, outputs="probability", tile=TILE):
    """The blend as it was computed before streaming: whole-image float64 accumulators."""
    img = normalize_for_network(image)
    h, w = img.shape
    H, W = max(h, tile), max(w, tile)
    padded = np.pad(img, ((0, H - h), (0, W - w)), mode="symmetric")
    stride = tile - overlap
    corners = [(y, x) for y in axis_positions(H, tile, stride) for x in axis_positions(W, tile, stride)]
    acc, norm = None, np.zeros((H, W), np.float64)
    with torch.no_grad():
        for y, x in corners:
            logits = model(torch.from_numpy(padded[y:y + tile, x:x + tile][None, None].copy()))
            p = (torch.cat([torch.sigmoid(logits[:, :2]), torch.relu(logits[:, 2:])], 1)
                 if outputs == "star" else torch.sigmoid(logits))[0].numpy()
            if acc is None:
                acc = np.zeros((p.shape[0], H, W), np.float64 if p.shape[0] == 1 else np.float32)
            wt = tile_weights(tile, overlap, y > 0, y + tile < H, x > 0, x + tile < W)
            acc[:, y:y + tile, x:x + tile] += wt * p
            norm[y:y + tile, x:x + tile] += wt
    return (acc / norm)[:, :h, :w].astype(np.float32)


@pytest.mark.parametrize("shape, overlap, channels", [
    ((700, 1030), 64, 1), ((513, 600), 0, 1), ((300, 900), 100, 4), ((200, 180), 64, 1)])
def test_streamed_blend_is_bit_identical_to_whole_image_accumulation(shape, overlap, channels):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4096, shape, dtype=np.uint16)
    model = _net(channels)
    outputs = "star" if channels > 1 else "probability"
    got = predict_maps(model, image, overlap=overlap, outputs=outputs, batch_size=3)
    ref = _whole_image_reference(model, image, overlap, outputs)
    assert got.dtype == np.float32 and got.shape == (channels, *shape)
    assert np.array_equal(got, ref)


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return tracemalloc.get_traced_memory()[1] - base, out
    finally:
        tracemalloc.stop()


def test_tiled_prediction_memory_is_a_few_bytes_per_pixel():
    """2048×2048 uint16: the result (4 B/px), the network input (4 B/px) and a band of one tile row
    (2 B/px at this width) dominate; the old
    whole-image float64 accumulators, weights and quotient alone were 24 B/px."""
    n = 2048
    image = np.random.default_rng(0).integers(0, 65535, (n, n), dtype=np.uint16)
    model = _net()
    peak, prob = _peak_bytes(lambda: predict_maps(model, image, overlap=64, batch_size=4))
    per_pixel = peak / (n * n)
    assert prob.shape == (1, n, n)
    assert per_pixel < 14.0, f"{per_pixel:.1f} bytes per pixel"
    # whole-image accumulation needs far more (the reference is the former code)
    ref_peak, ref = _peak_bytes(lambda: _whole_image_reference(model, image, 64))
    assert ref_peak / (n * n) > 20.0
    assert np.array_equal(prob, ref)


def test_network_input_scaling_has_no_float64_copy():
    n = 2048
    image = np.random.default_rng(0).integers(0, 4096, (n, n), dtype=np.uint16)
    peak, x = _peak_bytes(lambda: normalize_for_network(image))
    assert x.dtype == np.float32 and peak / (n * n) < 5.0  # the float32 result and one block
    assert np.array_equal(x, (image.astype(np.float64) / 4095).astype(np.float32))
    small = image[:5, :7].astype(np.uint8)
    assert np.array_equal(normalize_for_network(small), small.astype(np.float32) / 255.0)


def _frame_with_panel(h, w, panel):
    """Image content above a dark panel of ``panel`` rows with white "text" in it."""
    rng = np.random.default_rng(3)
    img = rng.integers(100, 200, (h, w)).astype(np.uint8)
    img[h - panel:] = 0
    for r in range(h - panel + 6, h - 4, 12):  # text lines, 3 rows high, some characters
        for c in range(10, w - 20, 40):
            img[r:r + 3, c:c + 12] = 255
    return img


def test_a_data_bar_taller_than_15_percent_is_image_content():
    import warnings

    from tio2fiji.checks import ResultWarning
    from tio2fiji.io import detect_data_bar

    assert detect_data_bar(_frame_with_panel(1000, 400, 100)) == 100  # 10 %: a bar
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert detect_data_bar(_frame_with_panel(1000, 400, 200)) == 0  # 20 %: not a bar
    msgs = [str(w.message) for w in caught if issubclass(w.category, ResultWarning)]
    assert len(msgs) == 1 and "200 rows (20% of the frame)" in msgs[0] and "--data-bar-rows" in msgs[0]
