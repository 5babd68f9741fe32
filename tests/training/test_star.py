"""Star-convex outputs: StarDist's targets, polygons back to particles, multi-channel tiling, the
recipe on the bundled examples, and labels that survive rotation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tio2fiji.errors import InputError
from tio2fiji.instances import connected_components, labels_from_star, star_targets
from tio2fiji.metrics import match_instances, matched_pairs
from tio2fiji.transforms import augment_pair

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "data"


def _square():
    lab = np.zeros((40, 40), np.int32)
    lab[10:30, 10:30] = 1  # rows/columns 10..29: pixel edges at 10 and 30
    return lab


def test_star_targets_of_a_square_by_hand():
    prob, dist = star_targets(_square(), 32)
    assert prob.shape == (40, 40) and dist.shape == (32, 40, 40)
    # from pixel (20, 20) the square's pixel edges are 9.5 px away (to 29.5) on the +x/+y sides and
    # 10.5 px (to 9.5) on the -x/-y sides; rays 0, 8, 16, 24 are the four axis directions
    assert sorted(dist[[0, 8, 16, 24], 20, 20].tolist()) == pytest.approx([9.5, 9.5, 10.5, 10.5])
    # the diagonal ray (45 degrees) meets a corner, sqrt(2) * 9.5 or * 10.5 away; star_dist marches
    # in unit steps, so within half a step
    d = float(dist[4, 20, 20])
    assert min(abs(d - np.sqrt(2) * 9.5), abs(d - np.sqrt(2) * 10.5)) < 0.5
    # object probability: distance to the nearest outside pixel over its maximum (10 at the centre)
    assert prob[20, 20] == pytest.approx(1.0) and prob[10, 20] == pytest.approx(0.1)
    assert prob[0, 0] == 0 and (dist[:, 0, 0] == 0).all()


def _two_touching_discs():
    yy, xx = np.mgrid[:64, :96]
    lab = np.zeros((64, 96), np.int32)
    lab[(yy - 32) ** 2 + (xx - 30) ** 2 <= 15 ** 2] = 1
    lab[((yy - 32) ** 2 + (xx - 60) ** 2 <= 15 ** 2) & (lab == 0)] = 2  # touching, no gap
    return lab


def test_labels_from_star_separates_touching_discs_that_one_mask_merges():
    lab = _two_touching_discs()
    mask = lab > 0
    assert connected_components(mask, 4).max() == 1  # the mask alone merges them
    prob, dist = star_targets(lab, 32)
    for mode in ("polygons", "grow", "distance"):
        out = labels_from_star(prob, dist, mask=mask, mode=mode, nms_thresh=0.3)
        _, _, ious = matched_pairs(match_instances(out, lab))
        assert out.max() == 2 and ious.size == 2 and ious.min() > 0.9, mode
        # labels > 0 measured 4-connected are the same particles
        assert connected_components(out > 0, 4).max() == 2
    grown = labels_from_star(prob, dist, mask=mask, mode="grow")
    assert not (grown > 0)[~mask].any()  # grown particles never leave the mask


def test_labels_from_star_inputs_are_checked():
    prob, dist = star_targets(_square(), 8)
    with pytest.raises(InputError, match="needs the particle mask"):
        labels_from_star(prob, dist, mode="grow")
    with pytest.raises(InputError, match="needs the ray distances"):
        labels_from_star(prob, None)
    with pytest.raises(InputError, match="needs the ray distances"):
        labels_from_star(prob, None, mask=_square() > 0, mode="grow")
    # "distance" needs no rays; a mask component without a seed stays one particle
    mask = _square() > 0
    assert labels_from_star(np.zeros_like(prob), None, mask=mask, mode="distance").max() == 1
    with pytest.raises(InputError, match="prob_thresh"):
        labels_from_star(prob, dist, prob_thresh=1.5)
    with pytest.raises(InputError, match="do not fit"):
        labels_from_star(prob, dist[:, :10])
    assert labels_from_star(np.zeros_like(prob), dist).max() == 0


def test_rotation_keeps_touching_labels_apart():
    lab = _two_touching_discs().astype(np.uint16)
    img = np.zeros(lab.shape, np.float32)
    _, rot, val = augment_pair(img, lab, "none", 120.0, out_size=48)
    assert rot.dtype == np.uint16 and set(np.unique(rot)) <= {0, 1, 2}
    # two particles before and after; the same rotation of the binary mask would be one 4-component
    assert len(set(np.unique(rot)) - {0}) == 2
    _, rot_mask, _ = augment_pair(img, lab > 0, "none", 120.0, out_size=48)
    assert rot_mask.dtype == bool and connected_components(rot_mask, 4).max() == 1
    assert ((rot > 0) == rot_mask).all()


def _star_model(n_rays=8):
    from tio2fiji.models import Model, ModelSettings
    from tio2fiji.models.unet import build_unet

    torch.manual_seed(0)
    net = build_unet("resnet18", None, classes=2 + n_rays).eval()
    return Model(net, ModelSettings.from_config({"arch": "unet", "encoder": "resnet18", "classes": 2 + n_rays,
                                                 "outputs": "star", "n_rays": n_rays}))


def test_predict_maps_of_a_star_model():
    from tio2fiji.predict import predict_maps, predict_probability, segment

    model = _star_model()
    image = np.random.default_rng(0).integers(0, 255, (100, 300), dtype=np.uint8)
    maps = predict_maps(model, image, overlap=64)
    assert maps.shape == (10, 100, 300) and maps.dtype == np.float32
    assert (maps[:2] >= 0).all() and (maps[:2] <= 1).all() and (maps[2:] >= 0).all()
    assert np.array_equal(predict_probability(model, image), maps[0])
    seg = segment(model, image)
    assert seg.info["separate"] == "star" and seg.labels.shape == image.shape
    assert np.array_equal(seg.mask, seg.labels > 0)
    assert connected_components(seg.mask, 4).max() == seg.labels.max()


def test_export_and_reload_keep_the_star_parameters(tmp_path):
    from tio2fiji.models.checkpoint import export_model, load_model

    model = _star_model()
    ck = {"model": model.net.state_dict(), "model_config": model.settings.config}
    star = {"mode": "grow", "prob_thresh": 0.6, "nms_thresh": 0.3, "sigma": 1.0, "min_size": 20}
    path = export_model(ck, tmp_path / "m.pt", weights="int8", star=star)
    post = load_model(path).settings
    assert post.outputs == "star" and post.n_rays == 8 and post.star == star
    with pytest.raises(InputError, match="unknown star parameter"):
        export_model(ck, tmp_path / "bad.pt", star={"nms": 0.3})


def test_star_loss_terms_and_targets_of_a_crop():
    from tio2fiji.training.star import make_star_loss

    lab = _two_touching_discs()
    prob, dist = star_targets(lab, 8)
    target = torch.from_numpy(np.concatenate([(lab > 0)[None].astype(np.float32), prob[None], dist]))[None]
    valid = torch.ones(1, 1, *lab.shape)
    loss_fn = make_star_loss(gap_weight=0.0)
    # perfect logits: large where the target is 1, rays equal to the targets -> ray loss 0
    logits = torch.cat([(target[:, :1] * 2 - 1) * 20, torch.logit(target[:, 1:2].clamp(1e-4, 1 - 1e-4)),
                        target[:, 2:]], dim=1)
    total, terms = loss_fn(logits, target, valid)
    assert float(terms["dist_loss"]) == pytest.approx(0.0, abs=1e-6)
    worse = logits.clone()
    worse[:, 2:] += 2.0  # every ray 2 px too long: weighted L1 = 2
    _, terms2 = loss_fn(worse, target, valid)
    assert float(terms2["dist_loss"]) == pytest.approx(2.0, rel=1e-5)


def test_train_star_on_the_examples_and_resume(tmp_path):
    """One tiny epoch from the bundled model on the examples, then a resumed second epoch."""
    from tio2fiji.models.checkpoint import load_checkpoint, load_model
    from tio2fiji.training import build_dataset
    from tio2fiji.training.star import STAR_HISTORY_COLUMNS, train_star

    data = tmp_path / "data"
    build_dataset(EXAMPLES / "SEM", EXAMPLES / "masks", data, mode="practical", seed=0,
                  fractions=(0.34, 0.33, 0.33))
    split = json.loads((data / "split.json").read_text())["splits"]
    assert len(split["val"]) == 1
    run = tmp_path / "run"
    res = train_star(data, run, init="default", n_rays=8, epochs=1, crops_per_epoch=2, batch_size=2,
                     threads=2)
    assert res["best_epoch"] == 1 and (run / "best.pt").is_file()
    train_star(data, run, init="default", n_rays=8, epochs=2, crops_per_epoch=2, batch_size=2,
               threads=2, resume=True)
    hist = load_checkpoint(run / "last.pt")["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    import pandas as pd

    table = pd.read_csv(run / "history.csv")
    assert list(table.columns) == STAR_HISTORY_COLUMNS
    assert table["val_f1"].between(0, 1).all() and table["val_iou"].between(0.5, 1).all()
    # started from the bundled model: the particle channel segments from the first epoch on
    model = load_model(run / "best.pt")
    assert model.settings.outputs == "star"
