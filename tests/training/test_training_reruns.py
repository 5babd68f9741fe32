"""Reruns into a training folder (issue 15, case 10): never a silent overwrite, never a resumed run
whose recorded settings are not the ones it trains with, and bad options refused before anything
is built.

The runs are a 3×3 convolution on 32×32 random items: a second each.
"""

import json

import pandas as pd
import pytest
from _tiny_training import fit_tiny
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.errors import InputError
from tio2fiji.models.checkpoint import load_checkpoint


def _one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_rerun_without_resume_is_refused_and_keeps_the_run(tmp_path):
    fit_tiny(tmp_path, epochs=2)
    before = {n: (tmp_path / n).read_bytes() for n in ("last.pt", "best.pt", "run.json")}
    with pytest.raises(InputError) as exc:
        fit_tiny(tmp_path, epochs=2)
    msg = _one_line(exc)
    assert str(tmp_path) in msg and "last.pt and best.pt" in msg
    assert "--resume" in msg and "--overwrite" in msg and "new --out" in msg
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


def test_overwrite_replaces_the_whole_run(tmp_path):
    fit_tiny(tmp_path, epochs=3)
    res = fit_tiny(tmp_path, epochs=1, overwrite=True)
    assert res["resumed_from"] is None
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1]  # not the old 3 rows
    assert "resumes" not in json.loads((tmp_path / "run.json").read_text())


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(InputError, match="give one of them"):
        fit_tiny(tmp_path, resume=True, overwrite=True)


def test_best_pt_without_last_pt_cannot_be_resumed(tmp_path):
    fit_tiny(tmp_path)
    (tmp_path / "last.pt").unlink()
    with pytest.raises(InputError, match="no last.pt, so there is no run to resume"):
        fit_tiny(tmp_path, resume=True)


def test_resume_with_another_lr_or_batch_size_is_refused(tmp_path):
    fit_tiny(tmp_path)
    last = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(InputError) as exc:
        fit_tiny(tmp_path, epochs=2, lr=1e-2, batch_size=4, resume=True)
    msg = _one_line(exc)
    assert "lr 0.001 -> 0.01" in msg and "batch_size 2 -> 4" in msg
    assert "epochs" not in msg.split("(")[1].split(")")[0]  # more epochs is not a mismatch
    assert (tmp_path / "last.pt").read_bytes() == last
    assert json.loads((tmp_path / "run.json").read_text())["lr"] == 1e-3  # still the truth


def test_resume_with_another_model_config_is_refused(tmp_path):
    fit_tiny(tmp_path)
    with pytest.raises(InputError, match=r"model_config\.encoder 'tiny' -> 'other'"):
        fit_tiny(tmp_path, epochs=2, resume=True, model_config={"arch": "unet", "encoder": "other"})


def test_resume_with_more_epochs_continues_and_records_it(tmp_path):
    fit_tiny(tmp_path, epochs=1)
    res = fit_tiny(tmp_path, epochs=3, resume=True)
    assert res["resumed_from"] == 1 and [h["epoch"] for h in res["history"]] == [1, 2, 3]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["epochs"] == 3
    assert run["resumes"] == [{"from_epoch": 1, "changed": {"epochs": [1, 3]}}]
    assert load_checkpoint(tmp_path / "last.pt")["resumes"] == run["resumes"]
    # a second resume adds to the record
    fit_tiny(tmp_path, epochs=4, resume=True)
    run = json.loads((tmp_path / "run.json").read_text())
    assert [r["from_epoch"] for r in run["resumes"]] == [1, 3]


def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path):
    fit_tiny(tmp_path, epochs=3)
    with pytest.raises(InputError, match="holds 3 finished epochs; 2 in all would not continue it"):
        fit_tiny(tmp_path, epochs=2, resume=True)


def test_cosine_schedule_is_not_restarted_by_more_epochs(tmp_path):
    """A finished cosine run ends at lr/100; resumed with more epochs it stays there (the old
    schedule's length would make torch's recursive cosine climb back towards lr)."""
    fit_tiny(tmp_path, epochs=2, schedule="cosine")
    res = fit_tiny(tmp_path, epochs=4, schedule="cosine", resume=True)
    lrs = [h["lr"] for h in res["history"]]
    # cosine over 2 epochs from 1e-3 to 1e-5: epoch 1 at 1e-3, epoch 2 halfway
    assert lrs[:2] == pytest.approx([1e-3, 1e-5 + (1e-3 - 1e-5) / 2])
    assert lrs[2:] == pytest.approx([1e-5, 1e-5])


@pytest.mark.parametrize("option, value, shown", [
    ("lr", -1.0, "lr (--lr) must be a number > 0, got -1.0"),
    ("lr", float("nan"), "lr (--lr) must be a number > 0, got nan"),
    ("threads", -1, "threads (--threads) must be an integer >= 0, got -1"),
    ("epochs", 0, "epochs (--epochs) must be an integer >= 1, got 0"),
    ("batch_size", 0, "batch_size (--batch-size) must be an integer >= 1, got 0"),
])
def test_bad_options_are_refused_before_any_data_is_read(tmp_path, option, value, shown):
    from tio2fiji.training import train_maskrcnn, train_unet
    from tio2fiji.training.star import train_star

    missing = tmp_path / "no-such-data"  # reading it would fail with another message
    for recipe in (train_unet, train_star, train_maskrcnn):
        if recipe is train_maskrcnn and option == "epochs":
            option_, value_ = "epochs_heads", -1
            shown_ = "epochs_heads (--epochs-heads) must be an integer >= 0, got -1"
        else:
            option_, value_, shown_ = option, value, shown
        with pytest.raises(InputError) as exc:
            recipe(missing, tmp_path / "run", **{option_: value_})
        assert _one_line(exc).startswith(shown_)
    assert not (tmp_path / "run").exists()


def test_cli_rerun_and_bad_options_are_one_line_errors(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"an earlier run")
    data = tmp_path / "data"  # never read: the folder is refused first
    for cmd in (["train", "unet"], ["train", "star"], ["train", "maskrcnn"]):
        res = runner.invoke(main, [*cmd, str(data), "--out", str(run)])
        assert res.exit_code == 1, res.output
        lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "holds last.pt of an earlier run; use --resume" in lines[0]
        assert "Traceback" not in res.output
    assert (run / "last.pt").read_bytes() == b"an earlier run"
    for args in (["--lr", "-1"], ["--threads", "-1"], ["--epochs", "0"], ["--batch-size", "0"]):
        res = runner.invoke(main, ["train", "unet", str(data), "--out", str(tmp_path / "new"), *args])
        assert res.exit_code != 0 and "Traceback" not in res.output, res.output
        assert args[0] in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    res = runner.invoke(main, ["train", "unet", str(data), "--out", str(run), "--resume", "--overwrite"])
    assert res.exit_code == 1 and "give one of them" in res.output
