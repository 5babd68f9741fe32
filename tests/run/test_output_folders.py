"""Output folders (issue 15, cases 8 and 9): checked before anything is computed, locked, and
holding one run's consistent set of files, listed in run_manifest.json."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.errors import OutputError
from tio2fiji.io import LOCK, MANIFEST, RunFolder, check_output_dir, read_manifest
from tio2fiji.run import run_files

EX = Path(__file__).resolve().parents[2] / "examples" / "data"
REPO = Path(__file__).resolve().parents[2]


def _mask(path, boxes):
    """A 0/255 mask with one square particle per (row, col) box corner, 10 x 10 pixels."""
    m = np.zeros((64, 64), np.uint8)
    for r, c in boxes:
        m[r:r + 10, c:c + 10] = 255
    tifffile.imwrite(path, m)
    return path


def _runs(folder):
    return json.loads((Path(folder) / MANIFEST).read_text())["runs"]


def _one_error_line(res):
    lines = [ln for ln in res.output.splitlines() if ln.strip() and "%|" not in ln]
    assert "Traceback" not in res.output
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    assert len(errors) == 1, res.output
    return errors[0]


# -- case 9: where the folder cannot be ----------------------------------------------------------

def _commands(out, tmp_path):
    img, mask = str(EX / "SEM" / "1908252.tif"), str(EX / "masks" / "1908252_m.tif")
    return {
        "measure": ["measure", mask, "--out", out],
        "distribution": ["distribution", mask, "--out", out],
        "segment": ["segment", img, "--out", out],
        "analyze": ["analyze", img, "--out", out],
        "evaluate": ["evaluate", "--images", str(EX / "SEM"), "--masks", str(EX / "masks"),
                     "--out", out],
        "dataset build": ["dataset", "build", "--images", str(EX / "SEM"), "--masks",
                          str(EX / "masks"), "--out", out],
    }


@pytest.mark.parametrize("where", ["file", "under_file", "proc"])
def test_every_command_refuses_an_unusable_out_in_one_line(tmp_path, where):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file\n")
    out = {"file": blocker, "under_file": blocker / "run", "proc": Path("/proc/tio2fiji-out")}[where]
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    for name, args in _commands(str(out), tmp_path).items():
        res = CliRunner().invoke(main, args)
        assert res.exit_code != 0, (name, res.output)
        line = _one_error_line(res)
        assert str(out) in line or "is a file" in line, (name, line)
        assert "1908252" not in line, (name, line)  # the folder is at fault, not the input
    assert blocker.read_text() == "a file\n"


def test_the_folder_is_checked_before_the_model_or_the_images(tmp_path):
    """segment and analyze would fail on the model (and the image) only after checking --out."""
    blocker = tmp_path / "f"
    blocker.write_text("x")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not a tiff")
    for cmd in ("segment", "analyze"):
        res = CliRunner().invoke(main, [cmd, str(broken), "--out", str(blocker / "out"),
                                        "--model", str(tmp_path / "missing.pt")])
        line = _one_error_line(res)
        assert res.exit_code == 1
        assert "cannot create the folder" in line and f"{blocker} is a file" in line, line


def test_proc_and_read_only_messages_say_the_real_cause(tmp_path):
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    with pytest.raises(OutputError, match=r"/proc/self: cannot write into the folder .*virtual"):
        check_output_dir("/proc/self")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        probe = ro / "probe"
        try:
            probe.write_text("x")  # root writes anyway: then the folder is writable after all
            probe.unlink()
            pytest.skip("running as a user who can write into a 0o500 folder (root)")
        except PermissionError:
            pass
        with pytest.raises(OutputError, match=r"cannot write into the folder \(Permission denied\)"):
            check_output_dir(ro)
    finally:
        ro.chmod(0o700)


def test_a_full_disk_names_the_output_and_stops_the_batch(tmp_path, monkeypatch):
    """ENOSPC simulated at the OS boundary (os.replace, where atomic_write publishes a file)."""
    masks = [_mask(tmp_path / f"m{i}.tif", [(5, 5)]) for i in range(2)]
    out = tmp_path / "out"
    real_replace = os.replace

    spare = set()  # the files that still fit

    def full(src, dst, *a, **k):
        if Path(dst).parent == out and Path(dst).name not in spare:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full)
    # full from the start: the run stops at its manifest, before measuring anything
    res = CliRunner().invoke(main, ["measure", *map(str, masks), "--out", str(out)])
    assert res.exit_code == 1
    assert _one_error_line(res).startswith(f"error: {out / MANIFEST}: cannot write the output (No "
                                           f"space left on device); the disk is full")
    # full after the start: the table is the one that cannot be written
    spare.add(MANIFEST)
    res = CliRunner().invoke(main, ["measure", *map(str, masks), "--out", str(out)])
    assert res.exit_code == 1
    line = _one_error_line(res)
    assert line == (f"error: {out / 'particles.csv'}: cannot write the output (No space left on "
                    f"device); the disk is full: free some space or choose another --out.")
    assert not (out / "particles.csv").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind

    # in a batch, the first file that cannot be written stops it: the others would fail alike
    seen = []

    def step(path, name, stem):
        seen.append(name)
        raise OutputError.from_os_error(out / f"{stem}.csv", OSError(errno.ENOSPC, "No space left"))

    with pytest.raises(OutputError, match="disk is full"):
        run_files(masks, step)
    assert seen == ["m0.tif"]


# -- case 8: one consistent set per folder -------------------------------------------------------

def test_a_failed_rerun_leaves_no_earlier_tables(tmp_path):
    good = _mask(tmp_path / "good_m.tif", [(5, 5), (30, 30)])
    broken = tmp_path / "broken_m.tif"
    broken.write_bytes(b"II*\x00 broken")
    out = tmp_path / "out"
    (out).mkdir()
    (out / "notes.txt").write_text("mine\n")  # a user's own file: never touched
    assert CliRunner().invoke(main, ["measure", str(good), "--out", str(out)]).exit_code == 0
    first = _runs(out)["measure"]
    assert first["status"] == "complete" and sorted(first["files"]) == ["particles.csv", "particles.json"]
    assert first["files"]["particles.csv"]["size"] == (out / "particles.csv").stat().st_size

    res = CliRunner().invoke(main, ["measure", str(broken), "--out", str(out)])
    assert res.exit_code == 1
    assert not (out / "particles.csv").exists() and not (out / "particles.json").exists()
    again = _runs(out)["measure"]
    assert again["files"] == {} and again["removed_from_earlier_run"] == ["particles.csv", "particles.json"]
    assert (out / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", MANIFEST]


def test_files_a_run_would_overwrite_without_a_manifest_are_refused(tmp_path):
    mask = _mask(tmp_path / "m.tif", [(5, 5)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "particles.csv").write_text("someone's table\n")
    res = CliRunner().invoke(main, ["measure", str(mask), "--out", str(out)])
    assert res.exit_code == 1
    assert "particles.csv (in no run manifest" in _one_error_line(res)
    assert (out / "particles.csv").read_text() == "someone's table\n"
    assert not (out / "particles.json").exists()

    # a file the earlier run wrote and the user changed since is not removed either
    out2 = tmp_path / "out2"
    assert CliRunner().invoke(main, ["measure", str(mask), "--out", str(out2)]).exit_code == 0
    (out2 / "particles.json").write_text("{}\n")
    res = CliRunner().invoke(main, ["measure", str(mask), "--out", str(out2)])
    assert res.exit_code == 1 and "particles.json changed since" in _one_error_line(res)
    assert (out2 / "particles.json").read_text() == "{}\n"


def test_two_commands_share_a_folder_only_without_overwriting_each_other(tmp_path):
    mask = _mask(tmp_path / "m.tif", [(5, 5), (30, 30), (5, 40)])
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["measure", str(mask), "--out", str(out)]).exit_code == 0
    assert CliRunner().invoke(main, ["distribution", str(mask), "--out", str(out)]).exit_code == 0
    runs = _runs(out)
    assert sorted(runs["measure"]["files"]) == ["particles.csv", "particles.json"]
    assert sorted(runs["distribution"]["files"]) == ["distribution.csv", "distribution.json"]
    assert (out / "particles.csv").exists()  # the distribution run left measure's set alone

    # an analyze run's folder: a distribution run would replace its distribution.csv
    folder = tmp_path / "analysis"
    with RunFolder(folder, "analyze", planned=["distribution.csv", "report.html"]):
        (folder / "distribution.csv").write_text("analyze's\n")
        (folder / "report.html").write_text("<html>\n")
    res = CliRunner().invoke(main, ["distribution", str(mask), "--out", str(folder)])
    assert res.exit_code == 1
    assert "distribution.csv (of the earlier analyze run)" in _one_error_line(res)
    assert (folder / "distribution.csv").read_text() == "analyze's\n"


def test_a_rerun_removes_the_earlier_per_image_files_but_not_its_inputs(tmp_path):
    out = tmp_path / "out"
    with RunFolder(out, "segment", planned=["a_mask.tif", "b_mask.tif", "segment.json"]):
        for name in ("a_mask.tif", "b_mask.tif", "segment.json"):
            (out / name).write_text(name)
    # the rerun has one image, and reads the earlier a_mask.tif as its input
    with RunFolder(out, "segment", planned=["c_mask.tif", "segment.json"],
                   inputs=[out / "a_mask.tif"]) as run:
        assert run.removed == ["b_mask.tif", "segment.json"]
        (out / "c_mask.tif").write_text("c")
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.tif", "c_mask.tif", MANIFEST]
    entry = read_manifest(out)["runs"]["segment"]
    assert sorted(entry["files"]) == ["c_mask.tif"] and entry["status"] == "complete"


def test_a_run_that_fails_inside_the_folder_is_recorded_as_failed(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), RunFolder(out, "analyze", planned=["particles.csv"]):
        (out / "particles.csv").write_text("half\n")
        raise RuntimeError("boom")
    entry = _runs(out)["analyze"]
    assert entry["status"] == "failed: RuntimeError: boom" and list(entry["files"]) == ["particles.csv"]
    assert not (out / LOCK).exists()


_HOLDER = """
import sys
from pathlib import Path
from tio2fiji.io import RunFolder
out = Path(sys.argv[1])
with RunFolder(out, "measure", planned=["particles.csv", "particles.json"]):
    (out / "particles.csv").write_text("half-written run\\n")
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_is_refused_while_one_writes_and_a_killed_one_is_cleaned_up(tmp_path):
    out = tmp_path / "out"
    mask = _mask(tmp_path / "m.tif", [(5, 5)])
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], cwd=REPO, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "ready"
        res = CliRunner().invoke(main, ["measure", str(mask), "--out", str(out)])
        assert res.exit_code == 1
        line = _one_error_line(res)
        assert f"another tio2fiji run (measure, pid {holder.pid}" in line
        assert f"(lock {out / LOCK})" in line and "wait for it to finish or choose another --out" in line
        assert (out / "particles.csv").read_text() == "half-written run\n"  # untouched
    finally:
        holder.kill()  # kill -9: the operating system releases the lock
        holder.wait()
    assert _runs(out)["measure"]["status"] == "running"
    res = CliRunner().invoke(main, ["measure", str(mask), "--out", str(out)])
    assert res.exit_code == 0, res.output
    entry = _runs(out)["measure"]
    assert entry["status"] == "complete" and "particles.csv" in entry["removed_from_earlier_run"]
    assert (out / "particles.csv").read_text().startswith("Area,")


@pytest.mark.slow
def test_analyze_failed_rerun_leaves_no_earlier_csvs_beside_its_report(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    img = tmp_path / "x.tif"
    tifffile.imwrite(img, tifffile.imread(EX / "SEM" / "1908252.tif")[:256, :256])
    assert CliRunner().invoke(main, ["analyze", str(img), "--out", str(out), "--method",
                                     "clark-evans", "--threads", "1", "--allow-pixels"]).exit_code == 0
    assert (out / "particles.csv").exists() and (out / "x_mask.tif").exists()
    broken = tmp_path / "x2.tif"
    broken.write_bytes(b"II*\x00 broken")
    res = CliRunner().invoke(main, ["analyze", str(broken), "--out", str(out)])
    assert res.exit_code == 1 and "no image could be analysed" in res.output
    # the failed run's tables never stand beside its report; the earlier image's own files (its
    # part, mask, labels, panels) are kept, as for any rerun with other inputs (issue 31, item 11)
    assert not any((out / n).exists() for n in ("particles.csv", "summary.csv", "distribution.csv"))
    assert (out / "analysis.json").exists() and (out / "report.html").exists()
    assert (out / "parts" / "x.csv").exists() and (out / "x_mask.tif").exists()
    kept = json.loads((out / "analysis.json").read_text())["run"]["kept_other_images"]
    assert [k if isinstance(k, str) else k.get("image") for k in kept] == ["x.tif"]
