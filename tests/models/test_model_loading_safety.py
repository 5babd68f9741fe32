"""Model files are data, never code (issue 15, case 13): a crafted pickle is refused, nothing runs.

Every reader of ``.pt`` files goes through ``tio2fiji.models.checkpoint.load_checkpoint``
(``torch.load(weights_only=True)`` with numpy arrays allow-listed): the bundled model, training
checkpoints (numpy RNG states, numpy scalars) still load; a file whose pickle calls a function is
refused with one line naming the file, and the function is never called.
"""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from _tiny_training import fit_tiny

from tio2fiji.errors import InputError, Tio2FijiError
from tio2fiji.models.checkpoint import load_checkpoint, load_model


class _WritesMarker:
    """Unpickling this calls ``os.system("touch <marker>")``: what a malicious model file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsOpen:
    """Unpickling this calls ``builtins.open(marker, "w")``: creates the marker without a shell."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted(tmp_path, kind="torch", payload=_WritesMarker):
    marker = tmp_path / "pwned"
    doc = {"format": "tio2fiji-model", "model_config": {"arch": "unet"}, "weights": payload(marker)}
    path = tmp_path / f"evil_{kind}.pt"
    if kind == "torch":
        torch.save(doc, path)  # the zip container torch.save writes
    else:
        path.write_bytes(pickle.dumps(doc, protocol=2))  # a bare (legacy) pickle
    return path, marker


def _one_line_refusal(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert str(path) in msg and "not a tio2fiji model file or unsafe content" in msg
    assert "nothing in it was run" in msg


@pytest.mark.parametrize("kind", ["torch", "raw"])
@pytest.mark.parametrize("payload", [_WritesMarker, _CallsOpen])
def test_crafted_pickle_is_refused_and_nothing_runs(tmp_path, kind, payload):
    path, marker = _crafted(tmp_path, kind, payload)
    for reader in (load_checkpoint, load_model):
        with pytest.raises(InputError) as exc:
            reader(path)
        _one_line_refusal(exc, path)
    assert not marker.exists()


def test_the_refusal_names_the_function_it_would_have_called(tmp_path):
    path, _ = _crafted(tmp_path, "torch", _WritesMarker)
    with pytest.raises(InputError, match=r"refers to posix\.system|refers to os\.system"):
        load_checkpoint(path)


def test_training_resume_refuses_a_crafted_last_pt(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    evil, marker = _crafted(tmp_path, "torch")
    (run / "last.pt").write_bytes(evil.read_bytes())
    with pytest.raises(Tio2FijiError) as exc:
        fit_tiny(run, epochs=2, resume=True)
    _one_line_refusal(exc, run / "last.pt")
    assert not marker.exists()


def test_cli_segment_with_a_crafted_model_is_one_line_error(tmp_path):
    from click.testing import CliRunner

    from tio2fiji.cli import main

    path, marker = _crafted(tmp_path, "torch")
    image = sorted((__import__("pathlib").Path(__file__).parents[2] / "examples" / "data" / "SEM")
                   .glob("*.tif"))[0]
    res = CliRunner().invoke(main, ["segment", str(image), "--model", str(path),
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    assert "error:" in res.output and "unsafe content" in res.output
    assert "Traceback" not in res.output and not marker.exists()


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"these are my notes, not a model")
    with pytest.raises(InputError, match="cannot read the model file") as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value)


def test_bundled_model_and_training_checkpoints_still_load(tmp_path):
    from tio2fiji.training.engine import rng_states, set_rng_states

    model = load_model("default")
    assert model.settings.config["arch"] == "unet"
    # what last.pt holds: numpy's RNG state (an ndarray), numpy scalars, nested plain data
    states = rng_states()
    expected_draw = np.random.random()
    doc = {"model": {"w": torch.arange(3.0)}, "rng": states, "val_iou": np.float64(0.75),
           "epoch": np.int64(3), "history": [{"epoch": 1, "lr": 1e-4}], "phase": None,
           "model_config": {"arch": "unet", "anchors": ((16,), (32,))}, "nan": float("nan")}
    torch.save(doc, tmp_path / "last.pt")
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["val_iou"] == 0.75 and back["epoch"] == 3 and back["history"] == doc["history"]
    assert back["model_config"]["anchors"] == ((16,), (32,))
    assert isinstance(back["rng"]["numpy"][1], np.ndarray)
    set_rng_states(back["rng"])
    assert np.random.random() == expected_draw  # the restored state draws the same number


def test_roi_zip_bomb_is_refused_before_inflating(tmp_path):
    from tio2fiji.particles._rois import MAX_ROI_BYTES, read_roi_zip

    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("0001.roi", b"Iout" + bytes(MAX_ROI_BYTES))  # ~64 KiB compressed
    assert path.stat().st_size < 1_000_000
    with pytest.raises(InputError, match="more than any ImageJ ROI") as exc:
        read_roi_zip(path)
    assert "\n" not in str(exc.value)
