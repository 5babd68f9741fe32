"""Every command and subcommand, with bad arguments: a non-zero exit code and one error line, never
a traceback. The commands come from walking ``tio2fiji.cli.main``'s click tree, so a new command
is covered without editing this file. Every bad value must be refused before a model is loaded or
a network trained (these tests take seconds)."""

from __future__ import annotations

import click
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.cli import main

BAD_NUMBERS = ("abc", "-1", "nan", "inf", "-inf", "1e999")


def _commands(group=main, prefix=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # commands are imported lazily (get_command)
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


COMMANDS = dict(_commands())


def _is_path(param):
    return isinstance(param.type, click.Path)


def _wants_dir(param):
    return _is_path(param) and not param.type.file_okay


def _is_out(param):
    return param.name in ("out_dir", "out_path")


def _is_number(param):
    return isinstance(param.type, (click.types._NumberParamTypeBase, click.IntRange)) or \
        getattr(param.type, "name", "") in ("integer", "float")


@pytest.fixture
def places(tmp_path):
    """An existing small TIFF, an existing empty folder, a fresh output path and an existing file."""
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"file": img, "dir": folder, "out": tmp_path / "out", "missing": tmp_path / "missing",
            "tmp": tmp_path}


def _value(param, places, bad=None):
    if bad is not None and bad[0] is param:
        return bad[1]
    if _is_out(param):
        return str(places["out"])
    if _wants_dir(param):
        return str(places["dir"])
    return str(places["file"])


def _args(cmd, places, bad=None, with_optional=None):
    """Argument list: every required parameter (and ``with_optional``) filled in, ``bad`` =
    (param, value) in its place."""
    args = []
    for p in cmd.params:
        wanted = p.required or p is with_optional or (bad is not None and bad[0] is p)
        if not wanted:
            continue
        value = _value(p, places, bad)
        if isinstance(p, click.Argument):
            args.append(value)
        else:
            args += [p.opts[0], value]
    return args


def _check_refused(res, what):
    out = res.output
    assert res.exit_code != 0, f"{what}: accepted\n{out}"
    assert "Traceback" not in out, f"{what}: traceback\n{out}"
    errors = [ln for ln in out.splitlines() if ln.startswith(("error: ", "Error: "))]
    assert errors, f"{what}: no 'error:' line\n{out}"
    assert len(out.strip().splitlines()) <= 5, f"{what}: too many lines\n{out}"
    return errors


def _cases(kind):
    for names, cmd in COMMANDS.items():
        for p in cmd.params:
            if kind == "number" and _is_number(p) and not p.is_flag:
                yield pytest.param(names, p.name, id=f"{' '.join(names)}-{p.name}")
            elif kind == "path" and _is_path(p):
                yield pytest.param(names, p.name, id=f"{' '.join(names)}-{p.name}")
            elif kind == "choice" and isinstance(p.type, click.Choice):
                yield pytest.param(names, p.name, id=f"{' '.join(names)}-{p.name}")


def _param(names, name):
    cmd = COMMANDS[names]
    return cmd, next(p for p in cmd.params if p.name == name)


def test_the_walk_finds_every_command():
    found = {" ".join(n) for n in COMMANDS}
    assert {"info", "measure", "distribution", "segment", "analyze", "evaluate", "export", "demo",
            "dataset build", "train unet", "train star", "train maskrcnn"} <= found


@pytest.mark.parametrize("names,name", list(_cases("number")))
def test_bad_numbers_are_refused_in_one_line(names, name, places):
    cmd, param = _param(names, name)
    for value in BAD_NUMBERS:
        res = CliRunner().invoke(main, [*names, *_args(cmd, places, bad=(param, value))])
        errors = _check_refused(res, f"{' '.join(names)} {param.opts[0]} {value}")
        assert param.opts[0] in errors[0] or param.name in errors[0], errors


@pytest.mark.parametrize("names,name", list(_cases("choice")))
def test_bad_choices_are_refused_in_one_line(names, name, places):
    cmd, param = _param(names, name)
    res = CliRunner().invoke(main, [*names, *_args(cmd, places, bad=(param, "no-such-choice"))])
    _check_refused(res, f"{' '.join(names)} {param.name} no-such-choice")


@pytest.mark.parametrize("names,name", list(_cases("path")))
def test_bad_paths_are_refused_in_one_line(names, name, places):
    """A path that does not exist, and a file where a folder is expected (an ``--out`` that is a
    file) or a folder where a file is expected."""
    cmd, param = _param(names, name)
    what = " ".join(names) + f" {param.name}"
    if not _is_out(param):
        missing = places["missing"] if _wants_dir(param) else places["missing"].with_suffix(".tif")
        res = CliRunner().invoke(main, [*names, *_args(cmd, places, bad=(param, str(missing)))])
        _check_refused(res, f"{what} missing")
    if _wants_dir(param) or param.name == "out_path":  # export's --out: a new folder or file
        wrong = places["file"]
    else:
        wrong = places["dir"]
    res = CliRunner().invoke(main, [*names, *_args(cmd, places, bad=(param, str(wrong)))])
    _check_refused(res, f"{what} {wrong}")


def test_no_arguments_at_all_is_a_usage_error():
    for names, cmd in COMMANDS.items():
        if not any(p.required for p in cmd.params):
            continue  # demo runs with defaults
        res = CliRunner().invoke(main, list(names))
        _check_refused(res, " ".join(names))


# --------------------------------------------------------------------------------------------
# issue 15, case 11: messages name only what exists


def test_multipage_message_names_a_command_that_has_page(tmp_path):
    stack = tmp_path / "stack_m.tif"
    tifffile.imwrite(stack, np.zeros((2, 8, 9), np.uint8), photometric="minisblack")
    res = CliRunner().invoke(main, ["measure", str(stack), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "tio2fiji info --page K" in res.output and "with page=K (command line" not in res.output
    assert "--page" not in COMMANDS[("measure",)].get_help(click.Context(COMMANDS[("measure",)]))


def test_float_label_image_is_not_told_to_be_16_or_32_bit(tmp_path):
    labels = tmp_path / "labels_m.tif"
    tifffile.imwrite(labels, np.array([[0, 1, 2], [3, 0, 0]], np.float32))
    res = CliRunner().invoke(main, ["measure", str(labels), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "16- or 32-bit" not in res.output
    assert "labels_m.tif: " in res.output and "(uint16 or uint32), not float32" in res.output


@pytest.mark.parametrize("command", ["segment", "analyze"])
def test_directory_as_model_is_called_a_folder(command, places):
    res = CliRunner().invoke(main, [command, str(places["file"]), "--out", str(places["out"]),
                                    "--model", str(places["dir"])])
    errors = _check_refused(res, command)
    assert "is a folder, not a model file" in errors[0] and "file not found" not in res.output


def test_failure_messages_always_name_the_file(tmp_path):
    from tio2fiji.errors import InputError
    from tio2fiji.run import failure_message
    from tio2fiji.transforms import normalize_for_network

    with pytest.raises(InputError) as exc:
        normalize_for_network(np.array([[-3, 5]], np.int16))
    assert "minimum -3" in str(exc.value) and "unsigned" in str(exc.value)
    path = tmp_path / "signed.tif"
    assert failure_message(path, exc.value) == f"{path}: {exc.value}"
    named = InputError(f"{path}: file is empty (0 bytes).")
    assert failure_message(path, named) == str(named)  # not named twice


def test_thesis_mode_message_names_options_that_exist(tmp_path):
    res = CliRunner().invoke(main, ["dataset", "build", "--images", "examples/data/SEM", "--masks",
                                    "examples/data/masks", "--out", str(tmp_path / "d")])
    errors = _check_refused(res, "dataset build")
    assert "use --mode practical" in errors[0]
