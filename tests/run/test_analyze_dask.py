"""`analyze` over many images: Dask workers, per-image parts, resume, inputs (issue 17).

Everything runs for real: the bundled U-Net and classifier, a local Dask cluster, and a ``dask
scheduler`` with two ``dask worker`` processes started here. The images are small crops of the
bundled examples, so that each run takes seconds; the serial run is the reference of the others.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.errors import InputError
from tio2fiji.io import MANIFEST, read_sem
from tio2fiji.run import analyze_images, gather_images

PS = 7.34375e-9
pytestmark = pytest.mark.usefixtures("one_torch_thread_module")  # the cores are shared
VENV = Path(sys.executable).parent
KW = {"methods": ("clark-evans",), "n_boot": 50, "envelope_sims": 0}


def _crops(example_images, folder, n, size=(192, 256)):
    """``n`` calibrated crops (four places and the centre of the three examples) as ``img00.tif``, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    areas = [np.asarray(read_sem(p).analysed) for p in example_images]
    out = []
    for i in range(n):
        a = areas[i % len(areas)]
        k = (i // len(areas)) % 5
        r = [0.2, 0.2, 0.8, 0.8, 0.5][k] * (a.shape[0] - size[0])
        c = [0.2, 0.8, 0.2, 0.8, 0.5][k] * (a.shape[1] - size[1])
        r, c = int(r), int(c)
        path = folder / f"img{i:02d}.tif"
        tifffile.imwrite(path, a[r:r + size[0], c:c + size[1]], imagej=True,
                         resolution=(1e-9 / PS, 1e-9 / PS), metadata={"unit": "nm"})
        out.append(path)
    return out


@pytest.fixture(scope="module")
def images(example_images, tmp_path_factory):
    return _crops(example_images, tmp_path_factory.mktemp("many") / "sem", 12)


@pytest.fixture(scope="module")
def serial(images, tmp_path_factory):
    """The reference: the default run, one image after another in this process, no Dask."""
    out = tmp_path_factory.mktemp("serial") / "out"
    return analyze_images(images, out, report=False, **KW)


def _sorted(path):
    table = pd.read_csv(path)
    return table.sort_values(["image", "X", "Y", "Area"]).reset_index(drop=True)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextmanager
def _dask(folder, workers=2, env=None, worker_args=()):
    """A ``dask scheduler`` and ``workers`` ``dask worker --nthreads 1`` processes; yields the
    scheduler file."""
    from distributed import Client

    sfile = folder / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    procs = [subprocess.Popen([str(VENV / "dask"), "scheduler", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sfile)], env=env, cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(300):
            if sfile.is_file() and sfile.stat().st_size:
                break
            time.sleep(0.1)
        for k in range(workers):
            procs.append(subprocess.Popen(
                [str(VENV / "dask"), "worker", "--scheduler-file", str(sfile), "--nthreads", "1",
                 "--no-dashboard", "--name", f"w{k}", *worker_args], env=env, cwd=folder,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(scheduler_file=str(sfile), timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield sfile
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A scheduler and two workers started as separate processes, for the whole module."""
    with _dask(tmp_path_factory.mktemp("dask")) as sfile:
        yield sfile


def test_local_cluster_and_a_scheduler_give_the_serial_numbers(serial, images, tmp_path, scheduler):
    ref = _sorted(serial.files["particles.csv"])
    assert len(ref) == sum(m["particles"] for m in serial.images) > 50
    assert [m["image"] for m in serial.images] == [p.name for p in images]
    assert set(ref["image"]) <= {p.name for p in images} and ref["image"].nunique() >= 8
    local = analyze_images(images, tmp_path / "local", report=False, workers=2, **KW)
    remote = analyze_images(images, tmp_path / "remote", report=False, scheduler=str(scheduler), **KW)
    for res, mode in ((local, "local Dask cluster, 2 worker(s)"), (remote, f"Dask scheduler {scheduler}")):
        assert res.ok and not res.skipped
        pd.testing.assert_frame_equal(_sorted(res.files["particles.csv"]), ref)
        assert _sha(res.files["particles.csv"]) == _sha(serial.files["particles.csv"])
        # per-image rows are merged in input order whatever order the workers finished in
        assert _sha(res.files["summary.csv"]) == _sha(serial.files["summary.csv"])
        assert _sha(res.files["distribution.csv"]) == _sha(serial.files["distribution.csv"])
        meta = json.loads((res.out_dir / "analysis.json").read_text())
        assert meta["run"]["mode"] == mode and meta["run"]["analysed"] == len(images)
    # the workers ran the graph this process exported (never built the PyTorch U-Net, whose module
    # is segmentation-models-pytorch), and the scheduler let go of it after the run
    from distributed import Client

    def worker_state():
        from tio2fiji.run import shared
        return "segmentation_models_pytorch" in sys.modules, shared("network") is not None

    with Client(scheduler_file=str(scheduler), timeout="30s") as client:
        assert set(client.run(worker_state).values()) == {(False, False)}


def test_resume_keeps_finished_images_and_redoes_changed_ones(images, tmp_path):
    (tmp_path / "sem").mkdir()
    images = [Path(shutil.copy2(p, tmp_path / "sem" / p.name)) for p in images]  # one is changed below
    out = tmp_path / "out"
    first = analyze_images(images, out, report=True, max_panels=3, **KW)
    parts = sorted((out / "parts").glob("*.json"))
    assert len(parts) == len(images) and first.ok
    # the report of a "large" run: plots and panels of 3 images evenly spaced, the CSVs of all
    page = first.report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 5 + 3  # the run's overview, 4 summary plots, 3 overlays
    assert "show 3 of them, evenly spaced over the input order" in page
    meta = json.loads((out / "analysis.json").read_text())
    # ... and the whole run pooled: every particle of the 12 images, as numpy computes it from the CSV
    every = pd.read_csv(out / "particles.csv")
    for row, table in zip(meta["run"]["pooled"], (every, every[every["complete"]])):
        assert row["images"] == len(images) and row["particles"] == len(table) and row["unit"] == "nm"
        np.testing.assert_array_equal([row["ECD_D10"], row["ECD_D50"], row["ECD_D90"]],
                                      np.quantile(table["ECD"], [0.1, 0.5, 0.9]))
    assert [r["particles_kind"] for r in meta["run"]["pooled"]] == ["all", "complete"]
    assert 'id="pooled-table"' in page and (out / "plots" / "run_overview.png").is_file()
    assert meta["run"]["report_panels"] == ["img00.tif", "img06.tif", "img11.tif"]
    assert len(pd.read_csv(out / "summary.csv")) == 2 * len(images) and len(meta["images"]) == len(images)
    assert sorted(p.name for p in (out / "plots").glob("*_overlay.png")) == \
        ["img00_overlay.png", "img06_overlay.png", "img11_overlay.png"]

    stamp = {p.name: (p.stat().st_mtime_ns, _sha(p)) for p in (out / "parts").iterdir()}
    csv = _sha(out / "particles.csv")
    again = analyze_images(images, out, report=True, max_panels=3, **KW)
    assert again.skipped == [p.name for p in images] and again.ok
    assert {p.name: (p.stat().st_mtime_ns, _sha(p)) for p in (out / "parts").iterdir()} == stamp
    assert _sha(out / "particles.csv") == csv
    assert json.loads((out / "analysis.json").read_text())["run"]["skipped"] == len(images)

    # one changed pixel redoes that image only
    pix = tifffile.imread(images[4])
    pix[0, 0] ^= 1
    tifffile.imwrite(images[4], pix, imagej=True, resolution=(1e-9 / PS, 1e-9 / PS), metadata={"unit": "nm"})
    third = analyze_images(images, out, report=True, max_panels=3, **KW)
    assert third.skipped == [p.name for p in images if p != images[4]]
    assert (out / "parts" / "img04.json").stat().st_mtime_ns != stamp["img04.json"][0]
    assert (out / "parts" / "img05.json").stat().st_mtime_ns == stamp["img05.json"][0]
    # other options that change numbers redo all; --force redoes all
    assert analyze_images(images, out, report=False, **{**KW, "n_boot": 60}).skipped == []
    forced = analyze_images(images, out, report=False, force=True, **{**KW, "n_boot": 60})
    assert forced.skipped == [] and forced.ok
    assert all((out / "parts" / n).stat().st_mtime_ns != t for n, (t, _) in stamp.items())
    # the earlier run's files it no longer makes (the overlays) are gone, the manifest lists the rest
    assert not any((out / "plots").glob("*"))
    entry = json.loads((out / MANIFEST).read_text())["runs"]["analyze"]
    assert entry["status"] == "complete" and "parts/img04.csv" in entry["files"]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_parts(images, tmp_path):
    """The whole process killed mid-run (kill -9): the rerun keeps the parts it finished."""
    out = tmp_path / "out"
    lst = tmp_path / "images.txt"
    lst.write_text("# the run's images\n" + "\n".join(str(p) for p in images) + "\n")
    cmd = [sys.executable, "-m", "tio2fiji.cli", "analyze", "--from-list", str(lst), "--out", str(out),
           "--method", "clark-evans", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(list((out / "parts").glob("*.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.stem for p in (out / "parts").glob("*.json"))
    assert 3 <= len(done) < len(images)
    res = CliRunner().invoke(main, cmd[3:])
    assert res.exit_code == 0, res.output
    assert f"skipped {len(done)} image(s) whose results" in res.output
    meta = json.loads((out / "analysis.json").read_text())
    assert meta["run"]["skipped_images"] == [f"{s}.tif" for s in done]
    table = pd.read_csv(out / "particles.csv")
    assert [m["image"] for m in meta["images"]] == [p.name for p in images]
    assert table.groupby("image").size().to_dict() == {m["image"]: m["particles"] for m in meta["images"]
                                                       if m["particles"]}


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_loses_no_image(serial, images, tmp_path, scheduler):
    """kill -9 of one of the scheduler's two worker processes mid-run: its image runs again
    elsewhere, every image ends in particles.csv exactly once, exit code 0."""
    from distributed import Client

    with Client(scheduler_file=str(scheduler), timeout="60s") as client:
        pids = sorted(client.run(os.getpid).values())
    assert len(pids) == 2
    out = tmp_path / "out"
    killed = []

    def kill_one():
        deadline = time.time() + 240
        while not list((out / "parts").glob("*.json")) and time.time() < deadline:
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    t = threading.Thread(target=kill_one)
    t.start()
    res = CliRunner().invoke(main, ["analyze", str(images[0].parent), "--glob", "*.tif", "--out", str(out),
                                    "--scheduler", str(scheduler), "--method", "clark-evans"])
    t.join()
    assert killed and res.exit_code == 0, res.output
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    table = pd.read_csv(out / "particles.csv")
    ref = _sorted(serial.files["particles.csv"])
    # every image once: the same particle count per image as the serial run
    assert table.groupby("image").size().to_dict() == ref.groupby("image").size().to_dict()
    assert len(table.drop_duplicates()) == len(table) == len(ref)
    np.testing.assert_allclose(_sorted(out / "particles.csv")["Area"], ref["Area"])


@pytest.mark.slow
def test_an_image_that_keeps_killing_workers_is_reported_failed_and_the_others_finish(images, tmp_path):
    """An image too large for the worker's memory limit: the nanny kills the worker, Dask runs the
    image again, the worker dies again, Dask gives up (allowed-failures 1 here); the run reports
    that image failed, exit code 1, and analyses the others."""
    huge = tmp_path / "huge.tif"
    tifffile.imwrite(huge, np.full((16000, 16000), 40, np.uint8))  # GBs to analyse, 256 MB to write
    # no pausing or spilling: a worker that holds the model would pause at 80 % of a tight limit
    # before it starts the image and wait forever; only the nanny's kill at 95 % may act. 2 GB: the
    # image's float32 copy (1 GB) on top of the worker's ~1 GB, so it dies at once, not after its tiles
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
           "DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "False",
           "DASK_DISTRIBUTED__WORKER__MEMORY__SPILL": "False",
           "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "False"}
    (tmp_path / "dask").mkdir()
    with _dask(tmp_path / "dask", workers=1, env=env, worker_args=["--memory-limit", "2GB"]) as sfile:
        res = CliRunner().invoke(main, ["analyze", str(images[0]), str(huge), str(images[1]), "--out",
                                        str(tmp_path / "o"), "--scheduler", str(sfile), "--method",
                                        "clark-evans", "--allow-pixels"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert f"{huge}: the Dask workers analysing it died (KilledWorker" in res.output
    assert "1 of 3 file(s) failed" in res.output
    meta = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert [m["image"] for m in meta["images"]] == [images[0].name, images[1].name]
    assert [f["file"] for f in meta["failures"]] == [str(huge)]


def test_inputs_folders_globs_and_lists(tmp_path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    for rel in ("b.tif", "a.png", "sub/c.TIF", "sub/notes.txt", "sub/d.tiff"):
        (d / rel).write_bytes(b"x")
    names = lambda ps: [p.relative_to(d).as_posix() for p in ps]  # noqa: E731
    assert names(gather_images([d])) == ["a.png", "b.tif", "sub/c.TIF", "sub/d.tiff"]
    assert names(gather_images([d], glob="*.tif")) == ["b.tif"]
    assert names(gather_images([d], glob="**/*.tif*")) == ["b.tif", "sub/d.tiff"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# images\n{d / 'b.tif'}\n\ndata/sub/d.tiff\n{d / 'b.tif'}\n")
    # a file given twice is analysed once; relative paths are relative to the list
    assert names(gather_images([d / "sub" / "c.TIF"], from_list=lst)) == ["sub/c.TIF", "b.tif", "sub/d.tiff"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no image files matching \*\.tif, .*--glob"):
        gather_images([tmp_path / "empty"])
    with pytest.raises(InputError, match="cannot read it"):
        gather_images([], from_list=tmp_path / "missing.txt")
    with pytest.raises(InputError, match="no images given"):
        gather_images([])
    res = CliRunner().invoke(main, ["analyze", str(d), "--glob", "*.jpg", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert re.search(r"error: .*data: no image files matching \*\.jpg", res.output)
    res = CliRunner().invoke(main, ["analyze", str(d / "b.tif"), "--out", str(tmp_path / "o"),
                                    "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert res.exit_code == 1 and "give either workers" in res.output and "Traceback" not in res.output


def test_outputs_are_never_inputs(tmp_path):
    """gather_images leaves out what a run wrote: files a run_manifest.json above them lists, the
    mask/labels/probability names beside one, and anything inside out_dir; with a warning."""
    from tio2fiji.checks import ResultWarning

    d = tmp_path / "data"
    (d / "results" / "plots").mkdir(parents=True)
    for rel in ("a.tif", "results/a_mask.tif", "results/a_labels.tif", "results/plots/a_overlay.png",
                "results/b_prob.tif", "results/mine.tif", "new/x.tif"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    (d / "results" / MANIFEST).write_text(json.dumps({"format": 1, "runs": {"analyze": {
        "files": {"a_mask.tif": {}, "a_labels.tif": {}}, "planned": ["plots/a_overlay.png"]}}}))
    names = lambda ps: [p.relative_to(d).as_posix() for p in ps]  # noqa: E731
    with pytest.warns(ResultWarning, match=r"4 file\(s\) left out of the inputs: tio2fiji's outputs"):
        # b_prob.tif: not listed, but a name tio2fiji writes beside a manifest; mine.tif stays
        assert names(gather_images([d])) == ["a.tif", "new/x.tif", "results/mine.tif"]
    with pytest.warns(ResultWarning, match=r"5 file\(s\) left out"):
        assert names(gather_images([d], out_dir=d / "new")) == ["a.tif", "results/mine.tif"]
    with pytest.raises(InputError, match=r"results: no image files matching \*_\*\.tif \(3 file\(s\) that "
                                         r"tio2fiji wrote left out\)"):
        gather_images([d / "results"], glob="*_*.tif")


@pytest.mark.slow
def test_out_inside_the_input_folder_twice_gives_the_same_rows(tmp_path, example_images):
    """Issue 31 round two: a second ``analyze D --out D/results`` read the first run's label image,
    mask and plots as SEM images: 385 rows (the labels' 108 and the mask's 146 particles beside the
    image's 131), then exit 1 on the plots. Now both runs give the image's 131 rows."""
    d = tmp_path / "D"
    d.mkdir()
    shutil.copy(example_images[0], d)
    tables = []
    for _ in range(2):
        res = CliRunner().invoke(main, ["analyze", str(d), "--out", str(d / "results"), "--model", "default",
                                        "--method", "clark-evans", "--threads", "1"])
        assert res.exit_code == 0, res.output
        tables.append(pd.read_csv(d / "results" / "particles.csv"))
    assert "left out of the inputs" in res.output and "1908248_labels.tif" in res.output
    assert len(tables[0]) > 100 and set(tables[1]["image"]) == {example_images[0].name}
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_absolute_glob_inside_the_folder_is_its_relative_pattern_else_one_line(tmp_path):
    """Before: ``--glob /abs/*.tif`` ended in pathlib's NotImplementedError traceback."""
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    for rel in ("b.tif", "a.png", "sub/d.tif"):
        (d / rel).write_bytes(b"x")
    # the same pattern written absolute finds what the relative one finds
    assert gather_images([d], glob=str(d / "*.tif")) == gather_images([d], glob="*.tif") == [d / "b.tif"]
    assert gather_images([d], glob=str(d / "**" / "*.tif")) == [d / "b.tif", d / "sub" / "d.tif"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    for glob, why in ((str(other / "*.tif"), "an absolute pattern outside the folder"),
                      ("", "no file pattern"), ("**x/*.tif", "not a file pattern")):
        with pytest.raises(InputError, match=why):
            gather_images([d], glob=glob)
        res = subprocess.run([sys.executable, "-m", "tio2fiji.cli", "analyze", str(d), "--glob", glob,
                              "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
        err = res.stderr.strip()
        assert res.returncode in (1, 2), res.stderr
        assert "Traceback" not in res.stderr + res.stdout and len(err.splitlines()) == 1, err
        assert why in err and "--glob" in err
    assert not (tmp_path / "o").exists()


def test_many_paths_from_a_list_do_not_meet_the_argument_limit(tmp_path, images):
    """200,000 path lines (far over the command line's limit) are read, de-duplicated and kept in order."""
    lst = tmp_path / "huge.txt"
    lst.write_text("\n".join(str(images[i % len(images)]) for i in range(200_000)) + "\n")
    assert len(lst.read_bytes()) > os.sysconf("SC_ARG_MAX")
    assert gather_images([], from_list=lst) == list(images)


def test_a_cluster_whose_workers_are_all_paused_fails_with_one_line_not_a_hang(images, tmp_path, monkeypatch):
    """A worker paused for memory (here: pause at 1 % of 4 GB, so from its start) never starts an
    image; the run ends after STALL_S with one line naming the cause, instead of waiting forever."""
    from tio2fiji.run import _cluster as cluster

    monkeypatch.setattr(cluster, "CHECK_S", 0.5)
    monkeypatch.setattr(cluster, "STALL_S", 3.0)
    env = {"DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "0.01",
           "DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE": "False"}
    (tmp_path / "dask").mkdir()
    with _dask(tmp_path / "dask", workers=1, env=env, worker_args=["--memory-limit", "4GB"]) as sfile:
        t0 = time.monotonic()
        res = CliRunner().invoke(main, ["analyze", str(images[0]), "--out", str(tmp_path / "o"),
                                        "--scheduler", str(sfile), "--method", "clark-evans"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "every Dask worker has been paused for 3 s" in res.output and "--memory-limit" in res.output
    assert time.monotonic() - t0 < 60
