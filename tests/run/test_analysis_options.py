"""An analyze run's options are stated once (:class:`tio2fiji.run.AnalysisOptions`): the CLI's
defaults, ``analysis.json``'s options and the resume key follow its fields, so an option added in
one place only fails here."""

import dataclasses
import subprocess
import sys

import pytest

from tio2fiji.cli._analyze import analyze
from tio2fiji.errors import InputError
from tio2fiji.run import AnalysisOptions, analyze_images

#: A value other than the default for every option: a new option must get one (and so a decision
#: on whether it changes numbers).
OTHER = {"model": "other.pt", "backend": "imagej", "separate": "none", "connectivity": 8,
         "methods": ("biovoxxel",), "points": "uep", "threshold": 0.3, "n_boot": 10, "seed": 1, "n_sim": 99,
         "envelope_sims": 0, "report": False, "complete_only": True, "data_bar_rows": 0, "pixel_size_m": 5e-9,
         "allow_pixels": True, "tta": True, "scale": "none", "size": "10-Infinity", "device": "cuda",
         "workers": 2, "scheduler": "tcp://127.0.0.1:8786", "threads": 2, "force": True, "max_panels": 3}
#: Options of the Python API that ``tio2fiji analyze`` does not offer.
API_ONLY = {"points", "n_boot", "n_sim", "envelope_sims", "report", "max_panels"}
#: CLI parameters named otherwise than their option, and CLI parameters that are no option.
CLI_NAMES = {"model_path": "model", "pixel_size": "pixel_size_m"}
CLI_ONLY = {"images", "out_dir", "pattern", "from_list"}
FIELDS = dataclasses.fields(AnalysisOptions)


def _key(opts, threshold=0.5, device="cpu"):
    return opts.resume_key("model-sha", "classifier-sha", threshold, device)


def test_every_option_has_another_value_and_says_whether_it_is_recorded_and_changes_numbers():
    assert set(OTHER) == set(AnalysisOptions.names())
    for f in FIELDS:
        assert set(f.metadata) == {"record", "numbers"}, f.name
        assert OTHER[f.name] != f.default, f.name


def test_the_cli_offers_the_options_with_the_librarys_defaults():
    cli = {CLI_NAMES.get(p.name, p.name): p for p in analyze.params if p.name not in CLI_ONLY}
    assert set(cli) == set(AnalysisOptions.names()) - API_ONLY
    for name, param in cli.items():
        default = getattr(AnalysisOptions(), name)
        want = str(default) if name == "connectivity" else default  # a click.Choice of "4"/"8"
        assert param.default == want, name


def test_analysis_json_records_the_options_marked_record():
    opts = AnalysisOptions(methods=["clark-evans"], size="10-500 pixel")
    recorded = opts.recorded(threshold=0.5)
    assert list(recorded) == [f.name for f in FIELDS if f.metadata["record"]]
    # the keys and values analysis.json has always had
    assert list(recorded) == ["backend", "separate", "connectivity", "methods", "points", "threshold", "n_boot",
                              "seed", "n_sim", "envelope_sims", "complete_only", "data_bar_rows", "pixel_size_m",
                              "allow_pixels", "tta", "scale", "size"]
    assert recorded["methods"] == ["clark-evans"] and recorded["threshold"] == 0.5
    assert AnalysisOptions(threshold=0.3).recorded(threshold=0.5)["threshold"] == 0.3


def test_the_resume_key_changes_with_every_option_that_changes_numbers_and_no_other():
    base = _key(AnalysisOptions())
    for f in FIELDS:
        changed = _key(dataclasses.replace(AnalysisOptions(), **{f.name: OTHER[f.name]}))
        if f.name == "device":  # the kind of device it ran on is given (resolved), not the text
            assert changed == base
            assert _key(AnalysisOptions(), device="cuda") != base
        elif f.metadata["numbers"]:
            assert changed != base, f.name
        else:
            assert changed == base, f.name
    assert _key(AnalysisOptions(), threshold=0.4) != base  # the model's threshold, when none is given
    # the threshold used counts, not how it was given
    assert _key(AnalysisOptions(threshold=0.5)) == base


def test_options_given_by_name_replace_the_given_options_and_unknown_names_are_refused(tmp_path):
    opts = AnalysisOptions.given(AnalysisOptions(n_boot=5), seed=3)
    assert (opts.n_boot, opts.seed, opts.backend) == (5, 3, "native")
    with pytest.raises(InputError, match="unknown analysis option.*colour"):
        analyze_images([tmp_path / "x.tif"], tmp_path / "o", colour="red")
    with pytest.raises(InputError, match="options must be an AnalysisOptions"):
        analyze_images([tmp_path / "x.tif"], tmp_path / "o", {"n_boot": 5})
    assert not (tmp_path / "o").exists()


def test_checked_options_have_one_form():
    opts = AnalysisOptions(methods=["clark-evans"], connectivity=8.0, tta=1, size=" 0-Infinity ").checked()
    assert opts.methods == ("clark-evans",) and type(opts.connectivity) is int and opts.tta is True
    assert opts.size is None  # every particle, as ImageJ's default
    assert AnalysisOptions(size=" 10-Infinity").checked().size == "10-Infinity"
    with pytest.raises(InputError, match="scale must be"):
        AnalysisOptions(scale="huge").checked()


def test_the_options_and_analyze_help_load_no_torch():
    code = ("import sys; from tio2fiji.run import AnalysisOptions; from click.testing import CliRunner; "
            "from tio2fiji.cli import main; r = CliRunner().invoke(main, ['analyze', '--help']); "
            "assert r.exit_code == 0, r.output; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
