"""Border U-Net (issue 27): the band where particles meet, its particles, the recipe on the bundled
examples, test-time augmentation and the error anatomy, each against hand-computed cases."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tio2fiji.errors import InputError
from tio2fiji.instances import border_band, drop_small, labels_from_border, labels_from_maps
from tio2fiji.metrics import error_anatomy, evaluate_images, match_instances
from tio2fiji.transforms import DIHEDRAL, dihedral, undo_dihedral

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "data"


def test_border_band_by_hand():
    lab = np.zeros((9, 9), np.int32)
    lab[1:4, 1:4] = 1
    lab[5:8, 1:4] = 2  # one background row (4) between 1 and 2
    lab[1:4, 6:8] = 3  # two background columns from 1: its 3x3 windows never see 1
    band = border_band(lab, 1)
    # 3x3 windows holding labels 1 and 2: only those centred on row 4, columns 0..4
    expected = np.zeros((9, 9), bool)
    expected[4, 0:5] = True
    assert np.array_equal(band, expected)
    # half-width 2 (5x5 windows): 1 and 2 both reached from rows 3..5 (r - 2 <= 3, r + 2 >= 5),
    # columns 0..5; 1 and 3 (and 2 and 3) from columns 4..5 (c - 2 <= 3, c + 2 >= 6), rows 0..5
    expected = np.zeros((9, 9), bool)
    expected[3:6, 0:6] = True
    expected[0:6, 4:6] = True
    assert np.array_equal(border_band(lab, 2), expected) and expected.sum() == 24
    with pytest.raises(InputError):
        border_band(lab.astype(float), 1)


def _two_touching_squares():
    prob = np.zeros((20, 30), np.float32)
    prob[5:15, 3:13] = 0.9
    prob[5:15, 13:23] = 0.9  # one mask component of two squares that touch along column 12/13
    border = np.zeros_like(prob)
    border[5:15, 11:15] = 0.8  # the network's band where they meet
    return prob, border


def test_labels_from_border_cuts_where_the_band_says():
    prob, border = _two_touching_squares()
    lab = labels_from_border(prob, border, threshold=0.5, border_threshold=0.5)
    assert lab.max() == 2
    # the watershed line falls inside the band, so each particle keeps its side: 10 rows x
    # (10 or 9 columns) with one column of line between them
    areas = sorted(np.bincount(lab.ravel())[1:])
    assert sum(areas) == 10 * 20 - 10 and abs(areas[0] - areas[1]) <= 10
    # a band below the threshold cuts nothing: one particle, as the mask alone
    assert labels_from_border(prob, border * 0.5, border_threshold=0.5).max() == 1
    # the 4-connected components of labels > 0 are the particles (one-pixel lines)
    from tio2fiji.instances import connected_components

    assert connected_components(lab > 0, 4).max() == 2


def test_labels_from_border_keeps_a_particle_smaller_than_the_band():
    prob, border = _two_touching_squares()
    prob[17:19, 25:27] = 0.9  # a 2x2 particle entirely covered by band
    border[16:20, 24:28] = 0.9
    lab = labels_from_border(prob, border)
    assert lab.max() == 3 and np.count_nonzero(lab[17:19, 25:27]) == 4
    # smallest seed larger than a seed region: the region seeds nothing, its component survives
    assert labels_from_border(prob, border, min_seed=1000).max() == 2


def test_labels_from_maps_dispatch_and_refusals():
    prob, border = _two_touching_squares()
    maps = np.stack([prob, border])
    lab, mask, method = labels_from_maps(maps, "border", 0.5)
    assert method == "border" and lab.max() == 2 and np.array_equal(mask, lab > 0)
    lab, mask, method = labels_from_maps(maps[:1], "probability", 0.5, separate="none")
    assert method == "none" and lab.max() == 1 and mask.sum() == 200
    with pytest.raises(InputError, match="border U-Net"):
        labels_from_maps(maps[:1], "probability", 0.5, separate="border")


def test_drop_small_by_hand():
    lab = np.zeros((6, 6), np.int32)
    lab[0, 0] = 5
    lab[2:5, 2:5] = 9
    out = drop_small(lab, 2)
    assert out.max() == 1 and (out > 0).sum() == 9


def test_dihedral_round_trip_and_group():
    a = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    seen = set()
    for k in range(len(DIHEDRAL)):
        t = dihedral(a, k)
        assert np.array_equal(undo_dihedral(t, k), a)
        seen.add(t.tobytes() + bytes(t.shape))
    assert len(seen) == 8  # eight different symmetries


def test_tta_is_the_mean_of_the_eight_turned_back_maps():
    from tio2fiji.models.checkpoint import build_model
    from tio2fiji.predict import predict_maps

    torch.manual_seed(0)
    net = build_model({"arch": "unet", "encoder": "resnet18", "in_channels": 1, "classes": 2}).eval()
    img = (np.random.default_rng(0).random((64, 96)) * 255).astype(np.uint8)
    kw = dict(mode="whole", outputs="border", engine="torch")
    expected = np.mean([np.rot90(predict_maps(net, np.rot90(img, k), **kw), -k, axes=(1, 2)) for k in range(4)]
                       + [np.rot90(predict_maps(net, np.rot90(img, k).T, **kw).transpose(0, 2, 1), -k, axes=(1, 2))
                          for k in range(4)], axis=0)
    got = predict_maps(net, img, tta=True, **kw)
    assert got.shape == (2, 64, 96)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, predict_maps(net, img, **kw), atol=1e-4)  # TTA changes the maps


def _anatomy_case():
    """Hand-made manual particles and predictions, one of each cause."""
    gt = np.zeros((40, 60), np.int32)
    pred = np.zeros_like(gt)
    gt[0:10, 0:10], gt[0:10, 11:21] = 1, 2  # two neighbours ...
    pred[0:10, 0:21] = 1  # ... predicted as one particle: both merged, the prediction a merger
    gt[20:30, 0:10] = 3  # cut into pieces of 40 and 50 px, neither more than half of it
    pred[20:30, 0:4], pred[20:30, 5:10] = 2, 3
    gt[20:30, 30:40] = 4  # missed
    gt[0:10, 40:50] = 5  # found alone, outline far too large: IoU 100/210
    pred[0:10, 40:50] = 4
    pred[10:21, 40:50] = 4
    gt[30:40, 50:60] = 6  # matched: IoU 90/100
    pred[30:39, 50:60] = 5
    pred[35:38, 20:25] = 6  # on no manual particle: spurious
    return gt, pred


def test_error_anatomy_by_hand():
    gt, pred = _anatomy_case()
    a = error_anatomy(match_instances(pred, gt))
    assert (a["missed"], a["merged"], a["split"], a["boundary_only"]) == (1, 2, 1, 1)
    assert (a["false_merger"], a["false_piece"], a["false_spurious"]) == (1, 3, 1)
    # by size: every manual particle has 100 px (class 100-400 px); the 15 px spurious one is 10-100 px
    assert a["unmatched_by_size"]["100_400px"] == {"missed": 1, "merged": 2, "split": 1, "boundary_only": 1}
    assert a["false_by_size"]["10_100px"] == {"merger": 0, "piece": 2, "spurious": 1}


def test_evaluate_images_min_size_drops_small_objects_on_both_sides():
    gt, pred = _anatomy_case()
    gt[39, 0] = 7  # a one-pixel drawing fragment, unmatched
    pred[39, 2] = 7  # a one-pixel false particle
    res = evaluate_images([pred], [gt], coco=False)
    over = evaluate_images([pred], [gt], coco=False, min_size=10)
    # all objects: 1 match of 7 manual and 7 predicted particles; over 9 px: 1 of 6 and 6
    assert res["f1"] == pytest.approx(2 * 1 / (2 * 1 + 6 + 6))
    assert over["f1"] == pytest.approx(2 * 1 / (2 * 1 + 5 + 5))
    assert res["anatomy"]["missed"] == 2 and over["anatomy"]["missed"] == 1
    assert over["per_image"]["n_gt"] == [6] and over["min_size"] == 10


def test_anatomy_overlay_colours_each_cause():
    from tio2fiji.metrics import GT_CAUSES, anatomy_labels
    from tio2fiji.report._overlay import ANATOMY_COLOURS, anatomy_rgb

    gt, pred = _anatomy_case()
    m = match_instances(pred, gt)
    rgb = anatomy_rgb(np.full(gt.shape, 100, np.uint8), m.gt_labels, m.pred_labels, *anatomy_labels(m), GT_CAUSES)
    missed = np.array(ANATOMY_COLOURS["missed"])
    assert np.allclose(rgb[25, 35], 0.45 * 100 + 0.55 * missed, atol=1)  # inside the missed particle
    assert tuple(rgb[30, 55]) == ANATOMY_COLOURS["matched"]  # the matched one's outline
    assert tuple(rgb[36, 20]) == ANATOMY_COLOURS["false"]  # the spurious one's outline


def test_train_border_on_the_examples_resume_and_segment(tmp_path):
    """One tiny epoch from the bundled one-output model on the examples, a resumed second, then segment."""
    from tio2fiji.models.checkpoint import export_model, load_checkpoint, load_model
    from tio2fiji.predict import segment
    from tio2fiji.training import build_dataset
    from tio2fiji.training.border import BORDER_HISTORY_COLUMNS, FRAGMENT, train_border

    data = tmp_path / "data"
    build_dataset(EXAMPLES / "SEM", EXAMPLES / "masks", data, mode="practical", seed=0,
                  fractions=(0.34, 0.33, 0.33))
    assert len(json.loads((data / "split.json").read_text())["splits"]["val"]) == 1
    run = tmp_path / "run"
    res = train_border(data, run, init="unet-watershed", epochs=1, crops_per_epoch=2, batch_size=2, threads=2)
    assert res["best_epoch"] == 1 and (run / "best.pt").is_file()
    train_border(data, run, init="unet-watershed", epochs=2, crops_per_epoch=2, batch_size=2, threads=2,
                 resume=True)
    assert [h["epoch"] for h in load_checkpoint(run / "last.pt")["history"]] == [1, 2]
    import pandas as pd

    table = pd.read_csv(run / "history.csv")
    assert list(table.columns) == BORDER_HISTORY_COLUMNS
    # started from the bundled model: the particle channel segments well from the first epoch on
    assert table["val_iou"].min() > 0.8 and table["val_f1"].between(0, 1).all()
    # the chosen post-processing travels with the weights and segment uses it
    out = export_model(run / "best.pt", tmp_path / "border.pt", weights="int8",
                       border={"border_threshold": 0.4, "min_seed": 4, "sigma": 1.0}, threshold=0.45)
    model = load_model(out)
    post = model.settings
    assert post.outputs == "border" and post.border["min_seed"] == 4 and post.threshold == 0.45
    seg = segment(model, next((EXAMPLES / "SEM").iterdir()))
    assert seg.info["separate"] == "border" and seg.info["border"]["sigma"] == 1.0 and seg.labels.max() > 50
    # the examples' masks hold drawing fragments, marked for the loss to ignore
    from tio2fiji.training.border import border_samples
    from tio2fiji.training.datasets import split_pairs

    train_pairs, _, _ = split_pairs(data)
    assert (border_samples(train_pairs)[0].mask == FRAGMENT).any()


def test_border_training_validates_with_the_decoding_it_is_given_or_the_inits(tmp_path):
    """A longer run chooses its epoch with the init's own decoding (what the bundled unet-border's
    settings say, or a border U-Net's); a distance U-Net started from a border U-Net keeps its
    threshold and gets the distance defaults; a one-output init gets the defaults; a decoding
    given replaces them, and unknown keys are refused."""
    from tio2fiji.instances import BORDER_DEFAULTS, DISTANCE_DEFAULTS
    from tio2fiji.models.checkpoint import load_model, resolve_model
    from tio2fiji.training.border import _decoding

    shipped = load_model("unet-border").settings
    assert shipped.outputs == "distance" and shipped.distance != DISTANCE_DEFAULTS  # chosen on validation
    assert _decoding(None, str(resolve_model("unet-border")), "distance") == (shipped.threshold, shipped.distance)
    border = {"border_threshold": 0.05, "min_seed": 16, "sigma": 1.0, "h": 0.0}
    torch.save({"model": {}, "model_config": {"outputs": "border", "threshold": 0.45, "border": border}},
               tmp_path / "border.pt")
    assert _decoding(None, str(tmp_path / "border.pt")) == (0.45, border)
    assert _decoding(None, str(tmp_path / "border.pt"), "distance") == (0.45, DISTANCE_DEFAULTS)
    assert _decoding(None, str(resolve_model("unet-watershed"))) == (0.5, BORDER_DEFAULTS)
    assert _decoding({"threshold": 0.3, "border": {"min_seed": 4}}, None) == (0.3, {**BORDER_DEFAULTS, "min_seed": 4})
    with pytest.raises(InputError, match="decoding"):
        _decoding({"band": 0.1}, None)
    with pytest.raises(InputError, match="decoding"):
        _decoding({"border": {"min_seed": 4}}, None, "distance")


def test_border_crop_targets_by_hand():
    """A 256x256 label image, no augmentation: band and particle targets as hand-made, drawing
    fragment and its one-pixel ring out of the loss."""
    from tio2fiji.training.border import FRAGMENT, BorderCropDataset
    from tio2fiji.training.datasets import Sample

    lab = np.zeros((256, 256), np.uint16)
    lab[100:120, 100:110] = 1
    lab[100:120, 111:121] = 2  # one-pixel gap at column 110
    lab[50, 50] = FRAGMENT
    ds = BorderCropDataset([Sample("x", np.zeros((256, 256), np.float32), lab)], length=1, seed=0,
                           variants=((None, 0),), photometric_p=0.0)
    img, target, valid = ds[0]
    assert np.array_equal(target[0].numpy() > 0, (lab > 0) & (lab != FRAGMENT))
    assert np.array_equal(target[1].numpy() > 0, border_band(np.where(lab == FRAGMENT, 0, lab).astype(np.int32), 2))
    # 5x5 windows holding both: rows 98..121 (reach 100..119), columns 109..111 (reach <= 109 and >= 111)
    assert target[1].sum() == 24 * 3
    v = valid[0].numpy()
    assert v.sum() == 256 * 256 - 9 and not v[49:52, 49:52].any()


def test_touch_crops_are_centred_where_particles_meet():
    """touch_p 1: every crop is centred on a band pixel (one pair of touching particles in a 1024x1024
    image), and an image without a band is never drawn; touch_p 0 draws as before (the plain
    dataset's crops); out of 0-1 refused."""
    from tio2fiji.training.border import BorderCropDataset
    from tio2fiji.training.datasets import RandomCropDataset, Sample

    lab = np.zeros((1024, 1024), np.uint16)
    lab[700:720, 300:310] = 1
    lab[700:720, 311:321] = 2  # the band: rows 698..721, columns 309..311
    sparse = np.zeros_like(lab)
    sparse[100:120, 100:120] = 1  # one particle, no band
    samples = [Sample("touch", np.random.default_rng(0).random(lab.shape, np.float32), lab),
               Sample("sparse", np.zeros(lab.shape, np.float32), sparse)]
    ds = BorderCropDataset(samples, touch_p=1.0, length=20, seed=1, photometric_p=0.0)
    ds.set_epoch(2)
    for i in range(len(ds)):
        img, lab_crop, val, recipe = ds.item_arrays(i)
        assert recipe["name"] == "touch"  # the image without a band is never drawn
        assert 698 <= recipe["y"] + 128 <= 722 and 309 <= recipe["x"] + 128 <= 312
        target = ds[i][1][1].numpy()
        assert target[124:133, 124:133].any()  # the band at the centre whatever the rotation
    plain = RandomCropDataset(samples, length=8, seed=1)
    zero = BorderCropDataset(samples, touch_p=0.0, length=8, seed=1)
    assert [plain.item_arrays(i)[3] for i in range(8)] == [zero.item_arrays(i)[3] for i in range(8)]
    with pytest.raises(InputError, match="touch_p"):
        BorderCropDataset(samples, touch_p=1.5)


def test_labels_from_border_h_splits_a_seed_region_at_its_neck():
    """Two discs of radius 8 whose centres are 14 px apart, no band between them: one particle
    with h = 0, two with h = 1 (each disc's distance maximum stands 8 - ~4.1 px above the neck)."""
    yy, xx = np.mgrid[0:30, 0:44]
    prob = (((yy - 15) ** 2 + (xx - 15) ** 2 <= 64) | ((yy - 15) ** 2 + (xx - 29) ** 2 <= 64)).astype(np.float32)
    border = np.zeros_like(prob)
    assert labels_from_border(prob, border).max() == 1
    lab = labels_from_border(prob, border, h=1.0)
    assert lab.max() == 2 and abs(int((lab == 1).sum()) - int((lab == 2).sum())) <= 16
    with pytest.raises(InputError):
        labels_from_border(prob, border, h=-1)


def test_distance_crop_target_and_loss_by_hand():
    """The third target is each particle's normalised distance; the distance loss counts only the
    manual particles' pixels: logits that match the target inside them and are wrong outside
    cost the minimum (the target's own entropy), logits wrong inside cost more."""
    from tio2fiji.instances import inner_distance
    from tio2fiji.training.border import BorderCropDataset, make_border_loss
    from tio2fiji.training.datasets import Sample

    lab = np.zeros((256, 256), np.uint16)
    lab[100:120, 100:110] = 1
    lab[100:120, 111:121] = 2
    ds = BorderCropDataset([Sample("x", np.zeros((256, 256), np.float32), lab)], length=1, seed=0,
                           variants=((None, 0),), photometric_p=0.0, distance=True)
    _, target, valid = ds[0]
    assert target.shape == (3, 256, 256)
    assert np.array_equal(target[2].numpy(), inner_distance(lab.astype(np.int32)))
    t = target[None]
    v = valid[None]
    logit = torch.logit(t[:, 2:3].clamp(1e-6, 1 - 1e-6))
    base = torch.cat([t[:, :2] * 20 - 10, logit], 1)
    loss = make_border_loss(distance_weight=2.0)
    outside = base.clone()
    outside[:, 2:3][t[:, :1] == 0] = 5.0  # wrong outside the particles: not counted
    inside = base.clone()
    inside[:, 2:3][t[:, :1] > 0] = 0.0  # 0.5 everywhere inside
    _, terms = loss(base, t, v)
    p = t[:, 2][t[:, 0] > 0].double()
    entropy = float(-(p * torch.log(p) + (1 - p) * torch.log1p(-p.clamp(max=1 - 1e-12))).nan_to_num().mean())
    assert float(terms["distance_loss"]) == pytest.approx(entropy, abs=1e-4)
    assert float(loss(outside, t, v)[1]["distance_loss"]) == pytest.approx(entropy, abs=1e-4)
    assert float(loss(inside, t, v)[1]["distance_loss"]) > entropy + 0.05
    total_d, _ = loss(base, t, v)
    total_b, _ = make_border_loss()(base[:, :2], t[:, :2], v)
    assert float(total_d - total_b) == pytest.approx(2.0 * entropy, abs=1e-3)
    with pytest.raises(InputError):
        make_border_loss(distance_weight=-1)


def test_train_distance_from_a_border_unet_and_segment(tmp_path):
    """A distance U-Net started from a border U-Net (the bundled unet-border's first two outputs):
    its first two outputs are the border U-Net's before training, the new head a copy of the
    particle head; one tiny epoch, then the exported file segments with its stored decoding."""
    from tio2fiji.models.checkpoint import export_model, load_checkpoint, load_model, resolve_model
    from tio2fiji.models.unet import build_unet
    from tio2fiji.predict import predict_maps, segment
    from tio2fiji.training import build_dataset
    from tio2fiji.training.border import DISTANCE_HISTORY_COLUMNS, _init_weights, train_border

    shipped = load_model("unet-border")  # a distance U-Net since stop 29
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in shipped.net.state_dict().items()}
    for k in ("segmentation_head.0.weight", "segmentation_head.0.bias"):
        state[k] = state[k][:2].clone()
    border_file = tmp_path / "border.pt"
    torch.save({"model": state, "model_config": {"arch": "unet", "encoder": "resnet18", "in_channels": 1,
                                                 "classes": 2, "outputs": "border", "threshold": 0.4}},
               border_file)
    net = build_unet("resnet18", None, classes=3)
    assert _init_weights(net, border_file, "resnet18", -4.0, "distance")  # a new head
    net.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        ref, new = shipped.net(x), net(x)
    # the new distance head starts as a copy of the particle head
    assert torch.allclose(new[:, :2], ref[:, :2], atol=1e-5) and torch.equal(new[:, 2], new[:, 0])
    # a distance U-Net init gives all its weights, no new head
    assert not _init_weights(net, resolve_model("unet-border"), "resnet18", -4.0, "distance")
    with torch.no_grad():
        assert torch.allclose(net(x), ref, atol=1e-5)
    # ... and learns at 10x lr while the rest is fine-tuned
    from tio2fiji.training.engine import adam_optimizer

    optimizer, _ = adam_optimizer(net, 1e-4, 5, "cosine", head_lr_factor=10.0)("all")
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, pytest.approx(1e-3)]
    assert len(optimizer.param_groups[1]["params"]) == 2  # the head's kernel and bias

    data = tmp_path / "data"
    build_dataset(EXAMPLES / "SEM", EXAMPLES / "masks", data, mode="practical", seed=0,
                  fractions=(0.34, 0.33, 0.33))
    run = tmp_path / "run"
    res = train_border(data, run, init=str(border_file), epochs=1, crops_per_epoch=2, batch_size=2, threads=2,
                       distance_weight=1.0)
    assert res["best_epoch"] == 1
    ck = load_checkpoint(run / "best.pt")
    cfg = ck["model_config"]
    assert cfg["outputs"] == "distance" and cfg["classes"] == 3 and cfg["threshold"] == 0.4
    import pandas as pd

    assert list(pd.read_csv(run / "history.csv").columns) == DISTANCE_HISTORY_COLUMNS
    assert json.loads((run / "run.json").read_text())["head_lr_factor"] == 10.0
    out = export_model(run / "best.pt", tmp_path / "distance.pt", weights="int8",
                       distance={"seed_threshold": 0.6, "min_seed": 2})
    model = load_model(out)
    assert model.settings.outputs == "distance" and model.settings.distance["seed_threshold"] == 0.6
    image = next((EXAMPLES / "SEM").iterdir())
    seg = segment(model, image)
    assert seg.info["separate"] == "distance" and seg.info["distance"]["min_seed"] == 2 and seg.labels.max() > 20
    assert predict_maps(model, np.zeros((64, 64), np.float32), mode="whole").shape == (3, 64, 64)
    # fine-tuning a distance U-Net (the default since stop 30) keeps its kind unless told otherwise
    train_border(data, tmp_path / "run2", init=out, epochs=1, crops_per_epoch=1, batch_size=1, threads=2)
    assert load_checkpoint(tmp_path / "run2" / "best.pt")["model_config"]["outputs"] == "distance"
    # a border U-Net from a distance U-Net keeps its particle and band heads
    net2 = build_unet("resnet18", None, classes=2)
    assert not _init_weights(net2, resolve_model("unet-border"), "resnet18", -4.0, "border")
    net2.eval()
    with torch.no_grad():
        assert torch.allclose(net2(x), ref[:, :2], atol=1e-5)
    torch.save({"model": {}, "model_config": {"encoder": "resnet18", "outputs": "star"}}, tmp_path / "star.pt")
    with pytest.raises(InputError, match="star"):
        _init_weights(net2, tmp_path / "star.pt", "resnet18", -4.0, "border")
