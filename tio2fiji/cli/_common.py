"""What the commands share: option types and decorators, progress bars, the error and warning
rules of the command group, and small helpers. Nothing here registers a command."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from ..checks import DOMAINS, ResultWarning, check_option, domain_message
from ..errors import InputError, Tio2FijiError

# library functions are imported by the commands that use them, so that `tio2fiji info` does not
# load torch; the option choices come from the library's own definitions
_CONNECTIVITY = click.Choice(["4", "8"])


class _Checked(click.ParamType):
    """A numeric option whose domain is :data:`tio2fiji.checks.DOMAINS` ``[option]``: the library's
    own rule, so the command line and the Python API refuse the same values in the same words."""

    def __init__(self, option):
        self.option = option
        self.name = "integer" if DOMAINS[option].integer else "float"

    def convert(self, value, param, ctx):
        try:
            return check_option(self.option, value)
        except InputError:
            self.fail(domain_message(self.option, value), param, ctx)


def _echo_warnings(caught):
    """Print the library's result warnings as ``warning: ...`` (once each); pass others on."""
    seen = set()
    for w in caught:
        if issubclass(w.category, ResultWarning):
            text = str(w.message)
            if text not in seen:
                seen.add(text)
                click.echo(f"warning: {text}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


class _Group(click.Group):
    """Turn tio2fiji's own errors into one clear line and exit code 1, never a traceback; print
    the warnings about results (:class:`tio2fiji.checks.ResultWarning`) as ``warning: ...``."""

    def invoke(self, ctx):
        caught = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResultWarning)
                try:
                    return super().invoke(ctx)
                except Tio2FijiError as exc:
                    click.echo(f"error: {exc}", err=True)
                    ctx.exit(1)
        finally:  # outside the recording: warnings passed on must not land in the list being read
            _echo_warnings(caught)


def _shortened(text: str, limit: int) -> str:
    """``text`` cut at a word to at most ``limit`` characters with ``...``, as click shortens help."""
    if len(text) <= limit:
        return text
    cut = text[:max(limit - 3, 0)].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "..."


class _LazyGroup(_Group):
    """A group whose commands are imported when one of them is run (or its own ``--help`` asked
    for), not to list them: ``tio2fiji --help`` and ``tio2fiji info`` start without torch, the
    JVM bridge or the distribution's compiled kernels.

    ``lazy`` maps a command's name to ``(module, one-line help)``; the module (relative to
    ``tio2fiji.cli``) registers the command on this group when imported. The one-line help is what
    the group's ``--help`` lists; ``tests/cli/test_cli.py`` checks it against the command's own.
    """

    def __init__(self, *args, lazy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.lazy:
            import importlib

            importlib.import_module(self.lazy[name][0], "tio2fiji.cli")
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is not None and cmd.hidden:
                continue
            limit = formatter.width - 6 - max(map(len, self.list_commands(ctx)))
            text = cmd.get_short_help_str(limit) if cmd is not None else _shortened(self.lazy[name][1], limit)
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# the training commands' --overwrite (engine.check_run_folder: without it or --resume a run folder is refused)
_OVERWRITE = click.option("--overwrite", is_flag=True,
                          help="Replace the run already in OUT (its checkpoints and history are removed).")


def _pixel_size(text):
    """``--pixel-size`` in metres (None when not given)."""
    from ..io import parse_length

    return check_option("pixel_size_m", parse_length(text), "--pixel-size") if text else None


def _fail_early_if_none_readable(paths):
    """Say so before a model is loaded when no input can be read (one bad input among good ones is
    that input's failure, reported with the others)."""
    if any(Path(p).is_file() for p in paths):
        return
    first = Path(paths[0])
    what = ("is a directory, not an image file" if first.is_dir()
            else f"file not found. Check the path (it is relative to {Path.cwd()})")
    more = f" (and none of the other {len(paths) - 1} input(s) is a file)" if len(paths) > 1 else ""
    raise InputError(f"{first}: {what}{more}.")


def example_data_dir() -> Path:
    """The bundled example data (``examples/data`` in a source checkout)."""
    return Path(__file__).resolve().parent.parent.parent / "examples" / "data"



class _Progress:
    """A tqdm bar for a batch; the library reports through the callback, the CLI draws."""

    def __init__(self, total, desc, unit="file"):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=total < 2, leave=False)

    def __call__(self, done, total, name):
        self.bar.set_postfix_str(name)
        self.bar.update(1)

    def close(self):
        self.bar.close()


class _StepProgress:
    """A tqdm bar moved to the ``done`` of ``progress(done, total, name)`` (training, tiles)."""

    def __init__(self, desc, unit="step", leave=True, postfix=True):
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, unit=unit, leave=leave)
        self.postfix = postfix

    def __call__(self, done, total, name):
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if self.postfix:
            self.bar.set_postfix_str(name)

    def close(self):
        self.bar.close()


def _report_failures(failures, total):
    for _, message in failures:
        click.echo(f"error: {message}", err=True)
    if failures:
        click.echo(f"{len(failures)} of {total} file(s) failed", err=True)


def _mask_options(f):
    """Options shared by the commands that read masks."""
    f = click.option("--threshold", type=_Checked("gray_threshold"), default=None,
                     help="For gray masks: pixels > T are particle.")(f)
    f = click.option("--pixel-size", default=None,
                     help="Pixel size with unit, e.g. 7.34375nm (overrides metadata).")(f)
    f = click.option("--images", "images_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Folder of the SEM images: each mask's calibration and data bar come from the "
                          "image with the same name (mask suffix _m/_mask removed).")(f)
    from ..imagej import BACKENDS  # here, not at the top: `tio2fiji --help` and `info` need no ImageJ bridge

    f = click.option("--backend", type=click.Choice(BACKENDS), default="native",
                     show_default=True)(f)
    f = click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
                     help="Output folder.")(f)
    return click.argument("masks", nargs=-1, required=True, type=click.Path(path_type=Path))(f)



def _device_option(f):
    """``--device auto|cpu|cuda[:N]`` of every command that runs a network (checked when used, by
    :func:`tio2fiji.models.resolve_device`, so that parsing it loads no torch)."""
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
                        help="Where the network runs: auto = the first CUDA GPU when torch sees one, "
                             "else the CPU.")(f)
