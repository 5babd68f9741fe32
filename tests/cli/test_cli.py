"""The command line: output of `info`, and clear errors (no tracebacks) for bad input."""

import numpy as np
import tifffile
from click.testing import CliRunner

from tio2fiji import __version__
from tio2fiji.cli import main


def test_version():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_info_reports_calibration_and_bar(example_images):
    res = CliRunner().invoke(main, ["info", str(example_images[0])])
    assert res.exit_code == 0, res.output
    assert "1024x768 uint8" in res.output
    assert "pixel size 7.34375 nm [CZ_SEM]" in res.output
    assert "data bar 64 rows [detected]" in res.output
    assert "analysed area 1024x704" in res.output


def test_info_bad_files_give_one_line_each_and_exit_1(tmp_path, example_images):
    text = tmp_path / "readme.tif"
    text.write_text("not an image")
    rgb = tmp_path / "colour.tif"
    img = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    tifffile.imwrite(rgb, img, photometric="rgb")
    res = CliRunner().invoke(main, ["info", str(example_images[0]), str(text), str(rgb), "missing.tif"])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    assert "readme.tif: not a readable TIFF" in res.output
    assert "colour.tif: colour RGB image" in res.output
    assert "missing.tif: file not found" in res.output
    assert "3 of 4 image(s) could not be read" in res.output
    assert "pixel size 7.34375 nm" in res.output  # the good image is still reported


def test_info_page_option(tmp_path):
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, np.zeros((2, 8, 9), np.uint8), photometric="minisblack")
    res = CliRunner().invoke(main, ["info", str(p)])
    assert res.exit_code == 1 and "--page K" in res.output
    res = CliRunner().invoke(main, ["info", "--page", "1", str(p)])
    assert res.exit_code == 0 and "9x8 uint8" in res.output


def test_help_lists_every_command_without_importing_them():
    """``tio2fiji --help`` lists every command with its own short help, in a process that imports
    neither torch nor a command module (issue 29: a fast start)."""
    import subprocess
    import sys

    import click

    from tio2fiji.cli import main
    from tio2fiji.cli._groups import COMMANDS, DATASET_COMMANDS, TRAIN_COMMANDS

    code = ("import sys; from click.testing import CliRunner; from tio2fiji.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); print(r.output); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('tio2fiji.cli._') "
            "and m not in ('tio2fiji.cli._groups', 'tio2fiji.cli._common')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip().endswith("[]")  # nothing heavy was imported to list the commands
    for name in [*COMMANDS, "train", "dataset"]:
        assert f"\n  {name} " in out
    # the short help listed is each command's own (the table cannot drift from the docstrings)
    ctx = click.Context(main)
    for group, table in ((main, COMMANDS), (main.get_command(ctx, "train"), TRAIN_COMMANDS),
                         (main.get_command(ctx, "dataset"), DATASET_COMMANDS)):
        for name, (_, short) in table.items():
            assert group.get_command(ctx, name).get_short_help_str(10 ** 6) == short, name
