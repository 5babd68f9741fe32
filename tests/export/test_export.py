"""Model export: the bioimage.io package validates and bioimageio.core reproduces its test output;
the ONNX file gives PyTorch's mask under onnxruntime. Real libraries, the bundled model, no mocks.

The network runs on small crops of a bundled example image to keep the CPU time down.
"""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tio2fiji import export as E
from tio2fiji.errors import InputError
from tio2fiji.io import read_sem
from tio2fiji.models.checkpoint import load_checkpoint

EXAMPLE = "examples/data/SEM/1908248.tif"


@pytest.fixture(scope="module")
def unet():
    from tio2fiji.models.checkpoint import load_model

    return load_model("default")


@pytest.fixture(scope="module")
def area():
    return read_sem(EXAMPLE).analysed


@pytest.fixture(scope="module")
def package(tmp_path_factory, unet, area):
    out = tmp_path_factory.mktemp("bioimageio") / "tio2fiji-unet.zip"
    # the test tensor: a 128x160 crop (the smallest size is 128: 64 + a 32-pixel halo each side)
    res = E.export_bioimageio(out, model=unet, test_image=area[200:328, 300:460], test=False)
    return res


def read_rdf(zip_path):
    from ruyaml import YAML

    with zipfile.ZipFile(zip_path) as zf:
        return YAML(typ="safe", pure=True).load(zf.read("rdf.yaml").decode())


def test_bioimageio_package_contents(package):
    path = package["path"]
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert names == {"rdf.yaml", "README.md", "cover.png", "test_input.npy", "test_output.npy",
                         "weights.torchscript.pt", "weights.onnx"}
        readme = zf.read("README.md").decode()
        import hashlib
        import io

        from PIL import Image

        cover = Image.open(io.BytesIO(zf.read("cover.png")))
        x = np.load(io.BytesIO(zf.read("test_input.npy")))
        y = np.load(io.BytesIO(zf.read("test_output.npy")))
        digests = {n: hashlib.sha256(zf.read(n)).hexdigest()
                   for n in ("weights.torchscript.pt", "weights.onnx")}
    assert cover.size == (640, 320)  # bioimage.io asks for 2:1 covers
    assert x.shape == y.shape == (1, 1, 128, 160) and x.dtype == y.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1  # gray levels, not [0, 1]
    assert 0 <= y.min() and y.max() <= 1
    rdf = read_rdf(path)
    assert rdf["license"] == "CC-BY-NC-ND-4.0"
    assert rdf["cite"][0]["doi"] == "10.1038/s41598-021-84287-6"
    assert set(rdf["weights"]) == {"torchscript", "onnx"}
    assert rdf["weights"]["onnx"]["parent"] == "torchscript"
    for key, name in (("torchscript", "weights.torchscript.pt"), ("onnx", "weights.onnx")):
        assert rdf["weights"][key]["sha256"] == digests[name]
    assert rdf["inputs"][0]["preprocessing"][-1] == {"id": "scale_linear",
                                                       "kwargs": {"gain": 1 / 255, "offset": 0.0}}
    # the threshold stored in the bundled file
    assert rdf["config"]["tio2fiji"]["threshold"] == load_checkpoint("default")["model_config"]["threshold"]
    assert "CC-BY-NC-ND-4.0" in readme and "Rühle" in readme and "Model card" in readme


def test_bioimageio_package_passes_spec_validation(package):
    from bioimageio.spec import InvalidDescr, load_description

    descr = load_description(package["path"], format_version="latest")
    assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
    assert descr.validation_summary.status in ("valid-format", "passed")
    assert descr.name == "TiO2 nanoparticle U-Net (tio2fiji)"
    assert [str(t.id) for t in descr.inputs] == ["raw"]
    assert [str(t.id) for t in descr.outputs] == ["probability"]


def test_test_output_is_the_networks_probability(package, unet):
    import torch

    with zipfile.ZipFile(package["path"]) as zf:
        import io

        x = np.load(io.BytesIO(zf.read("test_input.npy")))
        y = np.load(io.BytesIO(zf.read("test_output.npy")))
    with torch.no_grad():
        direct = torch.sigmoid(unet.net(torch.from_numpy(x / np.float32(255.0)))[:, :1]).numpy()  # the particle channel
    np.testing.assert_allclose(y, direct, atol=1e-5)
    assert 0.05 < (y > 0.5).mean() < 0.95  # the crop holds particles and background


@pytest.mark.slow
def test_bioimageio_core_reproduces_the_test_output(package):
    report = E.check_bioimageio(package["path"])
    assert report["status"] == "passed", report["details"]
    assert report["weights"] == ["onnx", "torchscript"]  # both weights formats were run


def test_onnx_gives_pytorchs_mask(tmp_path, unet, area):
    import onnx

    crop = area[100:356, 500:756]  # 256x256 of the example
    res = E.export_onnx(tmp_path / "unet.onnx", model=unet, test_image=crop)
    assert res["mask_equal"], res
    assert res["max_abs_diff"] < 1e-4
    assert 0.05 < res["particle_fraction"] < 0.95
    proto = onnx.load(str(tmp_path / "unet.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert float(meta["tio2fiji.threshold"]) == load_checkpoint("default")["model_config"]["threshold"]
    assert "CC-BY-NC-ND-4.0" in meta["license"]
    assert proto.opset_import[0].version == E.ONNX_OPSET
    # any height and width (multiples of 32) and batch size
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "unet.onnx"),
                                           providers=["CPUExecutionProvider"])
    out = session.run(None, {"raw": np.zeros((2, 1, 64, 96), np.float32)})[0]
    assert out.shape == (2, 1, 64, 96)


def test_bad_requests_are_input_errors(tmp_path, unet):
    with pytest.raises(InputError, match=r"\.onnx"):
        E.export_onnx(tmp_path / "unet.txt", model=unet)
    (tmp_path / "exists").mkdir()
    with pytest.raises(InputError, match="exists"):
        E.export_bioimageio(tmp_path / "exists", model=unet)
    with pytest.raises(InputError, match="too small"):
        E.export_onnx(tmp_path / "small.onnx", model=unet, test_image=np.zeros((40, 500), np.uint8))
    with pytest.raises(InputError, match="not found"):
        E.check_onnx(tmp_path / "missing.onnx", model=unet)
    with pytest.raises(InputError, match="format"):
        E.export(unet, "tflite", tmp_path / "x")
    with pytest.raises(InputError, match="no such bioimage.io package"):
        E.check_bioimageio(tmp_path / "missing.zip")


def test_a_failing_onnx_check_leaves_no_file(tmp_path, unet):
    """Before: the U-Net's ONNX file (57 MB for the default) stayed at --out when the check failed."""
    import tifffile

    from tio2fiji.cli import main

    out = tmp_path / "model.onnx"
    with pytest.raises(InputError, match="too small"):
        E.export_onnx(out, model=unet, test_image=np.zeros((40, 500), np.uint8))
    assert sorted(tmp_path.iterdir()) == []  # neither model.onnx nor its temporary file
    tiny = tmp_path / "tiny.tif"
    tifffile.imwrite(tiny, np.zeros((40, 500), np.uint8))
    res = CliRunner().invoke(main, ["export", "--format", "onnx", "--out", str(out), "--test-image",
                                    str(tiny)])
    assert res.exit_code == 1 and "too small" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tif"]
    # an earlier file at --out stays as it was
    out.write_bytes(b"earlier")
    with pytest.raises(InputError, match="too small"):
        E.export_onnx(out, model=unet, test_image=np.zeros((40, 500), np.uint8))
    assert out.read_bytes() == b"earlier" and len(list(tmp_path.iterdir())) == 2


def test_a_failing_bioimageio_test_leaves_no_package(tmp_path, unet, area, monkeypatch):
    """The package is tested before anything is written to ``out``. bioimageio.core cannot be made
    to fail on a sound package, so here (only) its verdict is replaced by a failure."""
    from tio2fiji.errors import Tio2FijiError

    tested = []

    def failing(package):
        tested.append(sorted(p.name for p in Path(package).iterdir()))
        return {"status": "failed", "format_version": "x", "weights": [], "details": ["made to fail"]}

    # where export_bioimageio looks it up (the package only re-exports it)
    monkeypatch.setattr(E._bioimageio, "check_bioimageio", failing)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Tio2FijiError, match="made to fail"):
        E.export_bioimageio(out / "p.zip", model=unet, test_image=area[200:328, 300:460])
    with pytest.raises(Tio2FijiError, match="made to fail"):
        E.export_bioimageio(out / "folder", model=unet, test_image=area[200:328, 300:460])
    assert list(out.iterdir()) == [] and len(tested) == 2 and "rdf.yaml" in tested[0]


def test_cli_export_reports_errors_in_one_line(tmp_path):
    from tio2fiji.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["export", "--format", "onnx", "--out", str(tmp_path / "m.txt")])
    assert res.exit_code == 1 and "must end in .onnx" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["export", "--format", "bioimageio", "--model", str(tmp_path / "no.pt"),
                               "--out", str(tmp_path / "p.zip")])
    assert res.exit_code == 1 and "model file not found" in res.output


@pytest.mark.slow
def test_cli_export_onnx(tmp_path, area):
    import tifffile

    from tio2fiji.cli import main

    image = tmp_path / "crop.tif"
    tifffile.imwrite(image, area[300:428, 200:392])  # 192x128
    res = CliRunner().invoke(main, ["export", "--format", "onnx", "--out", str(tmp_path / "u.onnx"),
                                    "--test-image", str(image)])
    assert res.exit_code == 0, res.output
    # the default's stored threshold (the distance U-Net's 0.4)
    assert "masks at 0.4 identical" in res.output and (tmp_path / "u.onnx").is_file()


@pytest.fixture(scope="module")
def maskrcnn():
    from tio2fiji.models.checkpoint import load_model

    return load_model("maskrcnn")


def test_maskrcnn_onnx_gives_pytorchs_particles(tmp_path, maskrcnn, area):
    import onnx
    import onnxruntime

    from tio2fiji.predict import predict_instances

    crop = area[150:406, 300:620]  # 256x320: two tiles
    head_thresh = maskrcnn.net.roi_heads.score_thresh
    res = E.export_onnx(tmp_path / "mrcnn.onnx", model=maskrcnn, test_image=crop)
    assert res["arch"] == "maskrcnn"
    n_torch, n_onnx = res["detections"]
    assert n_torch == n_onnx > 10, res
    assert res["max_score_diff"] < 1e-4 and res["max_abs_diff"] < 1e-3, res
    assert res["mask_equal"], res
    # the particles are those segment's own route paints with the stored post-processing
    post = maskrcnn.settings
    labels = predict_instances(maskrcnn, crop, score_threshold=post.score_threshold,
                               mask_threshold=post.threshold, max_overlap=post.max_overlap)[0]
    assert res["particles"] == (labels.max(), labels.max())
    proto = onnx.load(str(tmp_path / "mrcnn.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["tio2fiji.arch"] == "maskrcnn"
    assert float(meta["tio2fiji.score_threshold"]) == post.score_threshold
    assert float(meta["tio2fiji.rpn_nms_thresh"]) == maskrcnn.net.rpn.nms_thresh
    # the model's own box head keeps its value after the export
    assert maskrcnn.net.roi_heads.score_thresh == head_thresh
    # one 256x256 tile in; other sizes are refused by onnxruntime
    session = onnxruntime.InferenceSession(str(tmp_path / "mrcnn.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"tile": np.zeros((1, 1, 128, 128), np.float32)})


def test_maskrcnn_is_not_a_bioimageio_package(tmp_path, maskrcnn):
    with pytest.raises(InputError, match="--format onnx"):
        E.export_bioimageio(tmp_path / "p.zip", model=maskrcnn, test=False)


@pytest.mark.slow
def test_cli_export_maskrcnn_onnx(tmp_path, area):
    import tifffile

    from tio2fiji.cli import main

    image = tmp_path / "crop.tif"
    tifffile.imwrite(image, area[100:356, 400:656])  # one tile
    res = CliRunner().invoke(main, ["export", "--model", "maskrcnn", "--format", "onnx",
                                    "--out", str(tmp_path / "m.onnx"), "--test-image", str(image)])
    assert res.exit_code == 0, res.output
    assert "labels identical" in res.output and (tmp_path / "m.onnx").is_file()
    res = CliRunner().invoke(main, ["export", "--model", "maskrcnn", "--out", str(tmp_path / "p.zip")])
    assert res.exit_code == 1 and "--format onnx" in res.output and "Traceback" not in res.output
