"""The ``tio2fiji`` command line. It parses arguments, calls library functions and prints."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import click

from . import __version__
from .checks import DOMAINS, ResultWarning, check_option, domain_message
from .distribution import METHODS
from .errors import InputError, Tio2FijiError
from .imagej import BACKENDS
from .instances import CONNECTIVITY, SEPARATE

__all__ = ["main"]

# library functions are imported by the commands that use them, so that `tio2fiji info` does not
# load torch; the option choices above come from the library's own definitions
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResultWarning)
            try:
                return super().invoke(ctx)
            except Tio2FijiError as exc:
                click.echo(f"error: {exc}", err=True)
                ctx.exit(1)
            finally:
                _echo_warnings(caught)


# the training commands' --overwrite (engine.check_run_folder: without it or --resume a run folder is refused)
_OVERWRITE = click.option("--overwrite", is_flag=True,
                          help="Replace the run already in OUT (its checkpoints and history are removed).")


def _pixel_size(text):
    """``--pixel-size`` in metres (None when not given)."""
    from .io import parse_length

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
    return Path(__file__).resolve().parent.parent / "examples" / "data"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tio2fiji")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library decides.")
def main(verbose):
    """tio2fiji: SEM images of TiO2 nanoparticles to ImageJ-exact particle statistics."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # tifffile logs its own parse errors; ours say the same thing with the file name and a remedy
    logging.getLogger("tifffile").setLevel(logging.INFO if verbose else logging.CRITICAL)


def _format_pixel_size(ps):
    return f"{ps * 1e9:.6g} nm" if ps is not None else "none (pixels)"


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None,
              help="Height of the microscope's data bar; detected from the image when omitted.")
@click.option("--page", type=_Checked("page"), default=None, help="Page of a multi-page TIFF (0 = first).")
def info(images, data_bar_rows, page):
    """Print size, type, calibration and data-bar height of SEM IMAGES."""
    from .io import read_sem

    failed = 0
    for path in images:
        try:
            sem = read_sem(path, data_bar_rows=data_bar_rows, page=page)
        except Tio2FijiError as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        h, w = sem.data.shape
        click.echo(
            f"{path}: {w}x{h} {sem.original_dtype}, pixel size {_format_pixel_size(sem.pixel_size_m)} "
            f"[{sem.pixel_size_source}], data bar {sem.data_bar_rows} rows [{sem.data_bar_source}], "
            f"analysed area {w}x{h - sem.data_bar_rows}"
        )
        for note in sem.notes:
            click.echo(f"    note: {note}")
    if failed:
        click.echo(f"{failed} of {len(images)} image(s) could not be read", err=True)
        sys.exit(1)


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
    f = click.option("--backend", type=click.Choice(BACKENDS), default="native",
                     show_default=True)(f)
    f = click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
                     help="Output folder.")(f)
    return click.argument("masks", nargs=-1, required=True, type=click.Path(path_type=Path))(f)


@main.command()
@_mask_options
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True,
              help="4 keeps particles apart that touch only at corners (the BAM masks and tio2fiji's "
                   "own); 8 is ImageJ's default.")
@click.option("--include-holes", is_flag=True, help="Count holes as particle area (ImageJ 'include').")
@click.option("--exclude-edges", is_flag=True, help="Drop particles touching the image border.")
@click.option("--complete-only", is_flag=True,
              help="particles.csv lists only the complete particles (not partly hidden or cut).")
def measure(masks, out_dir, backend, images_dir, pixel_size, threshold, connectivity, include_holes,
            exclude_edges, complete_only):
    """Measure every particle of MASKS as ImageJ's Analyze Particles does; writes particles.csv
    (with complete_score and complete: whether a particle is whole, not partly hidden or cut)."""
    from .batch import measure_files

    ps = _pixel_size(pixel_size)
    bar = _Progress(len(masks), "measure")
    try:
        res = measure_files(list(masks), out_dir=out_dir, backend=backend, images_dir=images_dir,
                            pixel_size_m=ps, threshold=threshold, connectivity=int(connectivity),
                            include_holes=include_holes, exclude_edges=exclude_edges,
                            complete_only=complete_only, progress=bar)
    finally:
        bar.close()
    for it, t in zip(res.inputs, res.tables):
        unit = "nm" if it.pixel_size_m else "pixel"
        click.echo(f"{it.name}: {len(t)} particles, {int(t['complete'].sum())} complete "
                   f"({unit}; calibration: {it.calibration_source})")
    if res.tables:
        n_complete = sum(int(t["complete"].sum()) for t in res.tables)
        click.echo(f"wrote {res.files['particles.csv']} ({sum(len(t) for t in res.tables)} particles, "
                   f"{n_complete} complete, from {len(res.tables)} file(s))")
    _report_failures(res.failures, len(masks))
    if res.failures:
        sys.exit(1)


@main.command()
@_mask_options
@click.option("--method", "methods", multiple=True, default=("clark-evans",), show_default=True,
              type=click.Choice(METHODS),
              help="Repeat for several. biovoxxel reproduces BioVoxxel's Particle Distribution (2D) "
                   "(the thesis's Table 9); it is biased, see the docs.")
@click.option("--points", type=click.Choice(["auto", "uep", "centroid"]), default="auto", show_default=True,
              help="Ultimate eroded points (as the thesis) or particle centroids.")
@click.option("--alpha", type=_Checked("alpha"), default=0.05, show_default=True, help="Significance level.")
@click.option("--n-sim", type=_Checked("n_sim"), default=199, show_default=True,
              help="Monte Carlo simulations (a two-sided test at alpha needs n_sim >= 2/alpha).")
@click.option("--null", type=click.Choice(["csr", "hardcore"]), default="csr", show_default=True,
              help="Monte Carlo null: complete spatial randomness or non-overlapping discs.")
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
def distribution(masks, out_dir, backend, images_dir, pixel_size, threshold, methods, points, alpha,
                 n_sim, null, seed):
    """Test whether the particles of MASKS are clustered, random or regular; writes distribution.csv."""
    from .batch import concat_tables, distribution_files

    ps = _pixel_size(pixel_size)
    bar = _Progress(len(masks), "distribution")
    try:
        res = distribution_files(list(masks), out_dir=out_dir, methods=methods, backend=backend,
                                 images_dir=images_dir, pixel_size_m=ps, threshold=threshold,
                                 progress=bar, points=points, alpha=alpha, n_sim=n_sim, null=null,
                                 seed=seed)
    finally:
        bar.close()
    if res.tables:
        for _, row in concat_tables(res.tables).iterrows():
            click.echo(f"{row['image']}: {row['method']}: n={row['n']}, statistic={row['statistic']:.4g}, "
                       f"p={row['p_value']:.3g} -> {row['classification']}")
        click.echo(f"wrote {res.files['distribution.csv']}")
    _report_failures(res.failures, len(masks))
    if res.failures:
        sys.exit(1)


@main.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Folder with SEM/*.tif; defaults to the bundled examples.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("demo-out"),
              show_default=True)
@click.pass_context
def demo(ctx, data_dir, out_dir):
    """The main job on the bundled example images: 'tio2fiji analyze' with the bundled model.

    Reads the SEM images (calibration, data bar), segments them with the bundled U-Net, measures
    every particle as ImageJ does, tests their spatial distribution, and writes the tables, plots
    and report.html to OUT.
    """
    data_dir = data_dir or example_data_dir()
    images = sorted((data_dir / "SEM").glob("*.tif"))
    if not images:
        raise Tio2FijiError(f"{data_dir}: no SEM/*.tif images found; pass --data DIR.")
    click.echo(f"== 1. SEM images in {data_dir / 'SEM'}")
    ctx.invoke(info, images=images, data_bar_rows=None, page=None)
    click.echo("\n== 2. Segment with the bundled model, measure, test the distribution, report")
    ctx.invoke(analyze, images=images, out_dir=out_dir, model_path="default", backend="native",
               separate="auto", connectivity=str(CONNECTIVITY), methods=("clark-evans", "monte-carlo"), threshold=None,
               seed=0, threads=None, complete_only=False)
    click.echo(f"\nOpen {out_dir / 'report.html'} in a browser.")


@main.group("dataset")
def dataset_group():
    """Training data from image/mask folders."""


@dataset_group.command("build")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of SEM images.")
@click.option("--masks", "masks_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of masks <id>_m.tif (0/255).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for tiles, tiles.csv, split.json, coco.json.")
@click.option("--mode", type=click.Choice(["thesis", "practical"]), default="thesis", show_default=True,
              help="thesis: 22 source tiles -> 396 augmented tiles; practical: split whole images, "
                   "random crops while training.")
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--val-grouping", type=click.Choice(["tile", "source"]), default="tile", show_default=True,
              help="Thesis mode: random validation tiles (thesis) or whole held-out sources.")
@click.option("--format", "fmt", type=click.Choice(["png", "tif"]), default="png", show_default=True)
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None,
              help="Data-bar height; detected when omitted.")
@click.option("--skip-bad", is_flag=True, help="Leave unusable pairs out (reported) instead of stopping.")
def dataset_build_cmd(images_dir, masks_dir, out_dir, mode, seed, val_grouping, fmt, data_bar_rows,
                      skip_bad):
    """Write 256x256 tiles, the seeded split (split.json) and COCO annotations."""
    from .io import RunFolder
    from .training import build_dataset

    progress = bar = _StepProgress("tiles", unit="tile", leave=False, postfix=False)
    try:  # the tiles are not known in advance: the manifest lists every file the build wrote
        with RunFolder(out_dir, "dataset build", planned=["coco.json", "tiles.csv", "split.json"],
                       scan=True):
            res = build_dataset(images_dir, masks_dir, out_dir, mode=mode, seed=seed,
                                val_grouping=val_grouping, fmt=fmt, data_bar_rows=data_bar_rows,
                                on_bad="skip" if skip_bad else "raise", progress=progress)
    finally:
        bar.close()
    counts = res.counts()
    click.echo(f"{out_dir}: {mode} mode, seed {seed}: {counts['train']} train / {counts['val']} val / "
               f"{counts['test']} test tiles, {res.n_particles} particles in coco.json")
    click.echo("images: " + ", ".join(f"{k} {len(v)}" for k, v in res.split.items()))
    for p in res.problems:
        if p["problem"] != "tile: empty":
            click.echo(f"warning: {p['name']}: {p['problem']}: {p['detail']}", err=True)
    empty = sum(p["problem"] == "tile: empty" for p in res.problems)
    if empty:
        click.echo(f"note: {empty} tile(s) without particles (kept as negative examples)")


@main.group("train")
def train_group():
    """Train a segmentation network."""


@train_group.command("unet")
@click.argument("data_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: last.pt, best.pt, history.csv, training_curves.png.")
@click.option("--config", default="resnet18-scratch", show_default=True,
              type=click.Choice(["resnet18-imagenet", "resnet18-scratch", "resnet34-imagenet",
                                 "resnet34-scratch"]), help="One of the thesis's four U-Nets.")
@click.option("--encoder-weights", default=None,
              help="Override the configuration's encoder weights: imagenet, none, or a local file.")
@click.option("--epochs", type=_Checked("epochs"), default=50, show_default=True)
@click.option("--batch-size", type=_Checked("batch_size"), default=4, show_default=True, help="The thesis used 1.")
@click.option("--lr", type=_Checked("lr"), default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--loss", type=click.Choice(["dice", "dice+bce"]), default="dice", show_default=True)
@click.option("--gap-weight", type=_Checked("gap_weight"), default=0.0, show_default=True,
              help="With dice+bce: extra BCE weight of the 1-pixel gaps between touching particles.")
@click.option("--init", "init", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Start from the weights of this checkpoint (fine-tuning).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant",
              show_default=True)
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--crops-per-epoch", type=_Checked("crops_per_epoch"), default=None,
              help="Practical mode: random crops per epoch (default: tiles that fit the images).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@_OVERWRITE
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--workers", type=_Checked("workers"), default=0, show_default=True, help="DataLoader worker processes.")
def train_unet_cmd(data_dir, out_dir, config, encoder_weights, epochs, batch_size, lr, loss, gap_weight,
                   init, schedule, seed, crops_per_epoch, resume, overwrite, threads, workers):
    """Train a U-Net on DATA_DIR (written by 'tio2fiji dataset build')."""
    from .training import train_unet

    progress = bar = _StepProgress(f"train {config}")
    try:
        res = train_unet(data_dir, out_dir, config=config, encoder_weights=encoder_weights,
                         epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, gap_weight=gap_weight,
                         init=init, schedule=schedule, seed=seed, resume=resume,
                         crops_per_epoch=crops_per_epoch, num_workers=workers, threads=threads,
                         overwrite=overwrite, progress=progress)
    finally:
        bar.close()
    click.echo(f"best validation IoU {res['best_val_iou']:.4f} at epoch {res['best_epoch']}; "
               f"{len(res['history'])} epochs in {res['seconds'] / 60:.1f} min; checkpoints in {out_dir}")


@train_group.command("star")
@click.argument("data_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: last.pt, best.pt (best validation F1), history.csv, training_curves.png.")
@click.option("--config", default="resnet18-scratch", show_default=True,
              type=click.Choice(["resnet18-imagenet", "resnet18-scratch", "resnet34-imagenet",
                                 "resnet34-scratch"]), help="The encoder (weights from --init or scratch).")
@click.option("--init", "init", default=None,
              help="Start from a one-output U-Net: 'default', a bundled name or a checkpoint/model file.")
@click.option("--n-rays", type=_Checked("n_rays"), default=32, show_default=True, help="Rays per pixel (StarDist).")
@click.option("--epochs", type=_Checked("epochs"), default=15, show_default=True)
@click.option("--batch-size", type=_Checked("batch_size"), default=4, show_default=True)
@click.option("--lr", type=_Checked("lr"), default=3e-4, show_default=True, help="Adam learning rate.")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="cosine", show_default=True)
@click.option("--gap-weight", type=_Checked("gap_weight"), default=10.0, show_default=True,
              help="Extra BCE weight of the 1-pixel gaps between touching particles.")
@click.option("--crops-per-epoch", type=_Checked("crops_per_epoch"), default=128, show_default=True)
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@_OVERWRITE
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
def train_star_cmd(data_dir, out_dir, config, init, n_rays, epochs, batch_size, lr, schedule, gap_weight,
                   crops_per_epoch, seed, resume, overwrite, threads):
    """Train a star-convex U-Net (particle mask, object probability, rays) on DATA_DIR (practical mode)."""
    from .training.star import train_star

    progress = bar = _StepProgress("train star")
    try:
        res = train_star(data_dir, out_dir, config=config, n_rays=n_rays, init=init, epochs=epochs,
                         batch_size=batch_size, lr=lr, schedule=schedule, gap_weight=gap_weight,
                         crops_per_epoch=crops_per_epoch, seed=seed, resume=resume, threads=threads,
                         overwrite=overwrite, progress=progress)
    finally:
        bar.close()
    click.echo(f"best validation F1 {res['best_val_iou']:.4f} at epoch {res['best_epoch']}; "
               f"{len(res['history'])} epochs in {res['seconds'] / 60:.1f} min; checkpoints in {out_dir}")


@main.command("evaluate")
@click.option("--model", "model_path", default="default", show_default=True,
              help="'default' (bundled), a compact model file, or a training checkpoint (best.pt).")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--masks", "masks_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--split", "split_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None,
              help="split.json: evaluate only the images of --subset.")
@click.option("--subset", default="test", show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for metrics.json and per_image.csv.")
@click.option("--threshold", type=_Checked("threshold"), default=None,
              help="Probability threshold (default: the one stored with the model, else 0.5).")
@click.option("--mode", type=click.Choice(["blend", "thesis"]), default="blend", show_default=True,
              help="blend: overlapping tiles, smooth weights; thesis: 256 tiles, mirrored border.")
@click.option("--overlap", type=_Checked("overlap"), default=64, show_default=True)
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True)
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None)
@click.option("--save-masks", is_flag=True, help="Also write each predicted mask.")
@click.option("--separate", type=click.Choice(SEPARATE), default="auto",
              show_default=True, help="Touching particles: watershed split (auto for a U-Net), or "
              "none (connected components, as the thesis).")
def evaluate_cmd(model_path, images_dir, masks_dir, split_file, subset, out_dir, threshold, mode,
                 overlap, connectivity, data_bar_rows, save_masks, separate):
    """Score a model on image/mask pairs; writes metrics.json and per_image.csv."""
    from .evaluate import evaluate_model, select_pairs

    pairs = select_pairs(images_dir, masks_dir, split_file=split_file, subset=subset)
    bar = _Progress(len(pairs), "evaluate", unit="image")
    try:
        res = evaluate_model(model_path, pairs, out_dir=out_dir, threshold=threshold, overlap=overlap,
                             mode=mode, connectivity=int(connectivity), data_bar_rows=data_bar_rows,
                             save_masks=save_masks, separate=separate, progress=bar)
    finally:
        bar.close()

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    click.echo(f"{res['n_images']} image(s): mean IoU {fmt(res['mean_iou'])}, Dice {fmt(res['mean_dice'])}, "
               f"instance IoU {fmt(res['instance_iou'])}, AP50 (VOC11) {fmt(res['ap50_voc11'])}, "
               f"COCO AP {fmt(res['coco_ap'])}, count error {fmt(res['count_error'])}")
    click.echo(f"  one-to-one at IoU 0.5: precision {fmt(res['precision'])}, recall {fmt(res['recall'])}, "
               f"F1 {fmt(res['f1'])}, PQ {fmt(res['pq'])}; prediction-centred instance IoU (BAM) "
               f"{fmt(res['prediction_iou'])}; median ECD error {fmt(res['median_ecd_error'])}, "
               f"KS distance {fmt(res['ks_distance'])}")
    click.echo(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'per_image.csv'}")


@train_group.command("maskrcnn")
@click.argument("data_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: last.pt, best.pt, history.csv, training_curves.png.")
@click.option("--config", type=click.Choice(["1", "2", "3", "4"]), default="1", show_default=True,
              help="Row of the thesis's Table 3 (3 scored best there).")
@click.option("--weights-backbone", default="none", show_default=True,
              help="ResNet-50 weights: none, imagenet (from the local torch cache only), or a file.")
@click.option("--epochs-heads", type=_Checked("epochs_heads"), default=30, show_default=True,
              help="Phase 1: heads only, backbone frozen.")
@click.option("--epochs-all", type=_Checked("epochs_all"), default=50, show_default=True,
              help="Phase 2: the whole network.")
@click.option("--batch-size", type=_Checked("batch_size"), default=2, show_default=True)
@click.option("--lr", type=_Checked("lr"), default=0.01, show_default=True,
              help="SGD learning rate for the first half of each phase.")
@click.option("--lr-final", type=_Checked("lr_final"), default=1e-5, show_default=True,
              help="Learning rate for the second half of each phase.")
@click.option("--trainable-backbone-layers", type=click.IntRange(0, 5), default=None,
              help="Backbone stages trained in phase 2 (default 3 with pretrained weights, 5 without).")
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--crops-per-epoch", type=_Checked("crops_per_epoch"), default=None,
              help="Training tiles per epoch (default: every training tile once).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@_OVERWRITE
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--score-threshold", type=_Checked("score_threshold"), default=0.5, show_default=True,
              help="Detections kept for the validation IoU (stored with the model for prediction).")
@click.option("--no-val-loss", is_flag=True, help="Skip the validation loss (saves a forward pass).")
@click.option("--workers", type=_Checked("workers"), default=0, show_default=True, help="DataLoader worker processes.")
def train_maskrcnn_cmd(data_dir, out_dir, config, weights_backbone, epochs_heads, epochs_all, batch_size,
                       lr, lr_final, trainable_backbone_layers, seed, crops_per_epoch, resume, overwrite,
                       threads, device, score_threshold, no_val_loss, workers):
    """Train a Mask R-CNN (thesis Table 3) on DATA_DIR (written by 'tio2fiji dataset build')."""
    from .training import train_maskrcnn

    progress = bar = _StepProgress(f"train maskrcnn {config}")
    try:
        res = train_maskrcnn(data_dir, out_dir, config=int(config), weights_backbone=weights_backbone,
                             epochs_heads=epochs_heads, epochs_all=epochs_all, batch_size=batch_size,
                             lr=lr, lr_final=lr_final, trainable_backbone_layers=trainable_backbone_layers,
                             seed=seed, resume=resume, threads=threads, crops_per_epoch=crops_per_epoch,
                             score_threshold=score_threshold, val_loss=not no_val_loss,
                             num_workers=workers, device=device, overwrite=overwrite,
                             progress=progress)
    finally:
        bar.close()
    best = "n/a" if res["best_epoch"] is None else f"{res['best_val_iou']:.4f} at epoch {res['best_epoch']}"
    click.echo(f"best validation IoU {best}; {len(res['history'])} epochs in "
               f"{res['seconds'] / 60:.1f} min; checkpoints in {out_dir}")


@main.command("analyze")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Output folder.")
@click.option("--model", "model_path", default="default", show_default=True,
              help="'default' (bundled), a compact model file, or a training checkpoint (best.pt).")
@click.option("--backend", type=click.Choice(BACKENDS), default="native", show_default=True,
              help="Who measures the particles.")
@click.option("--separate", type=click.Choice(SEPARATE), default="auto",
              show_default=True, help="Touching particles: watershed split (auto for a U-Net; a Mask "
              "R-CNN finds its own), or none (connected components, as the thesis).")
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True,
              help="Particle connectivity of the components and the measurement (4: as the BAM masks).")
@click.option("--method", "methods", multiple=True, default=("clark-evans", "monte-carlo"), show_default=True,
              type=click.Choice(METHODS),
              help="Spatial-distribution test; repeat for several.")
@click.option("--threshold", type=_Checked("threshold"), default=None,
              help="Probability threshold (default: the one stored with the model).")
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True,
              help="Seed of the bootstrap intervals and the simulations.")
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--complete-only", is_flag=True,
              help="Summary, sizes, plots and spatial tests of the complete particles only (not partly "
                   "hidden or cut); particles.csv keeps every particle with its complete column.")
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None,
              help="Height of the microscope's data bar (0: none); detected from each image when omitted.")
def analyze(images, out_dir, model_path, backend, separate, connectivity, methods, threshold, seed, threads,
            complete_only, data_bar_rows):
    """Segment SEM IMAGES, measure every particle, test their spatial distribution, and write
    particles.csv, distribution.csv, summary.csv (per image a row of all particles and one of the
    complete ones), plots/ and report.html."""
    from .analyze import analyze_images

    _fail_early_if_none_readable(images)
    if threads:
        import torch

        torch.set_num_threads(threads)
    bar = _Progress(len(images), "analyze")
    try:
        res = analyze_images(list(images), out_dir, model=model_path, backend=backend, separate=separate,
                             connectivity=int(connectivity), methods=methods, threshold=threshold,
                             seed=seed, complete_only=complete_only, data_bar_rows=data_bar_rows,
                             progress=bar)
    finally:
        bar.close()

    def ecd(row):
        return (f"ECD median {row['ECD_median']:.4g} {row['unit']} [{row['ECD_median_ci_low']:.4g}, "
                f"{row['ECD_median_ci_high']:.4g}]")

    for meta in res.images:
        rows = {r["particles_kind"]: r for _, r in res.summary[res.summary["image"] == meta["image"]].iterrows()}
        done = f"(calibration: {meta['pixel_size_source']}), {meta['seconds']:.1f} s"
        c = rows["complete"]
        if complete_only:
            click.echo(f"{meta['image']}: {c['particles']} complete particles of {meta['particles']}, "
                       f"{c['area_coverage_pct']:.2f} % area, {ecd(c)} {done}")
        else:
            a = rows["all"]
            click.echo(f"{meta['image']}: {a['particles']} particles, {a['area_coverage_pct']:.2f} % area, "
                       f"{ecd(a)}; {c['particles']} complete, {ecd(c)} {done}")
    if res.images:
        click.echo(f"wrote {res.report} and particles.csv, distribution.csv, summary.csv, analysis.json, "
                   f"<image>_mask.tif, <image>_labels.tif, plots/ in {out_dir} ({res.seconds:.0f} s)")
    elif res.report is not None:
        click.echo(f"wrote {res.report} (no image could be analysed)")
    _report_failures(res.failures, len(images))
    if res.failures:
        sys.exit(1)


@main.command("segment")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for <stem>_mask.tif, <stem>_labels.tif, <stem>_scores.csv.")
@click.option("--model", "model_path", default="default", show_default=True,
              help="'default' (bundled U-Net), a model file or a checkpoint (U-Net or Mask R-CNN).")
@click.option("--separate", type=click.Choice(SEPARATE), default="auto",
              show_default=True, help="Touching particles: watershed split (auto for a U-Net) or none.")
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True,
              help="Connectivity of the particles with --separate none.")
@click.option("--threshold", type=_Checked("threshold"), default=None,
              help="Probability threshold (default: the one stored with the model).")
@click.option("--mode", type=click.Choice(["blend", "thesis"]), default="blend", show_default=True,
              help="blend: overlapping tiles, smooth weights; thesis: 256 tiles, mirrored border.")
@click.option("--overlap", type=_Checked("overlap"), default=64, show_default=True)
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None,
              help="Data-bar height; detected when omitted.")
@click.option("--rois", is_flag=True, help="Also write <stem>_rois.zip (ImageJ ROI Manager set).")
@click.option("--probability", is_flag=True, help="Also write <stem>_prob.tif (float32).")
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
def segment_cmd(images, out_dir, model_path, separate, connectivity, threshold, mode, overlap,
                data_bar_rows, rois, probability, threads):
    """Segment SEM IMAGES into particle masks, label images and (optionally) ROI sets."""
    from .batch import segment_files

    _fail_early_if_none_readable(images)
    if threads:
        import torch

        torch.set_num_threads(threads)
    bar = _Progress(len(images), "segment")
    try:
        res = segment_files(images, out_dir, model=model_path, separate=separate, threshold=threshold,
                            mode=mode, overlap=overlap, data_bar_rows=data_bar_rows,
                            connectivity=int(connectivity), rois=rois, probability=probability,
                            progress=bar)
    finally:
        bar.close()
    for info in res.inputs:
        # a renamed stem (x_2: another x.tif) says which input it is
        source = "" if info["image"] == Path(info["path"]).name else f" (from {info['image']})"
        click.echo(f"{info['stem']}: {info['particles']} particles{source}")
    click.echo(f"wrote {len(res.tables)} image(s) to {out_dir}")
    _report_failures(res.failures, len(images))
    if res.failures:
        sys.exit(1)


@main.command("export")
@click.option("--model", "model_path", default="default", show_default=True,
              help="'default' (bundled U-Net) or a U-Net model file / checkpoint.")
@click.option("--format", "fmt", type=click.Choice(["bioimageio", "onnx"]), default="bioimageio",
              show_default=True, help="bioimageio: model package (.zip or folder); onnx: one .onnx file.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Package .zip or new folder (bioimageio), or .onnx file.")
@click.option("--test-image", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="SEM image for the package's test tensors / the ONNX check (default: bundled example).")
@click.option("--no-test", is_flag=True, help="Skip the test run (bioimageio.core / onnxruntime).")
def export_cmd(model_path, fmt, out_path, test_image, no_test):
    """Export the U-Net for bioimage.io consumers (deepImageJ, ilastik, ...) or as ONNX."""
    from .export import export

    res = export(model_path, fmt, out_path, test_image=test_image, check=not no_test)
    click.echo(f"wrote {res['path']}")
    if fmt == "bioimageio":
        click.echo(f"  files: {', '.join(res['files'])}")
        if "test" in res:
            t = res["test"]
            click.echo(f"  bioimageio.core test: {t['status']} (format {t['format_version']}, "
                       f"weights {', '.join(t['weights'])})")
    elif "max_abs_diff" in res:
        masks = ("identical" if res["mask_equal"]
                 else f"differ in {res['mask_differences']} pixels")
        click.echo(f"  onnxruntime vs PyTorch on {res['test_image']} {res['shape'][1]}x{res['shape'][0]}: "
                   f"max |diff| {res['max_abs_diff']:.2e}, masks at {res['threshold']:g} {masks}")


if __name__ == "__main__":  # pragma: no cover
    main()
