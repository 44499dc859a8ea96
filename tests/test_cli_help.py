"""The commands' help and usage errors: every option explained with its default; bad values exit 2."""

import json
import re
from pathlib import Path

import pytest

from captioner import app
from captioner.assets import BUNDLED_CHECKPOINT
from captioner.cli import cache_features, caption, evaluate, export, train
from captioner.config import config_keys

COMMANDS = {
    "caption": caption, "captioner-eval": evaluate, "captioner-train": train, "captioner-export": export,
    "captioner-cache-features": cache_features, "captioner-demo": app,
}


def run(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_explained_with_its_default(name):
    parser = COMMANDS[name].get_args_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    text = " ".join(parser.format_help().split())  # undo the line wrapping
    assert all(option.help for option in options)
    # One "(default: ...)" per option that is not required, and none for the required ones.
    assert text.count("(default:") == sum(not option.required for option in options)


def test_help_shows_the_real_defaults(capsys):
    _, out, _ = run(evaluate.main, ["--help"], capsys)
    text = " ".join(out.split())
    assert "--split {train,val,test} which split of the dataset to caption and score (default: test)" in text
    assert "images captioned per forward pass (default: 32)" in text
    _, out, _ = run(train.main, ["--help"], capsys)
    assert "--list-config lists the keys" in " ".join(out.split())


def test_list_config_prints_every_key_with_its_default_and_comment(capsys):
    assert train.main(["--list-config"]) is None
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if not line.startswith("#")}
    keys = config_keys()
    assert len(lines) == len(keys)
    for key, default, comment in keys:
        assert re.fullmatch(rf"{re.escape(key)} +{re.escape(json.dumps(default))} +# {re.escape(comment)}", lines[key])


def test_bad_config_values_are_usage_errors(capsys):
    code, _, err = run(train.main, ["--set", "train.epochs=many"], capsys)
    assert code == 2 and err.startswith("usage: ")
    assert "error: config key 'train.epochs' expects int, got 'many'" in err
    code, _, err = run(train.main, ["--resume", "runs/x", "--set", "train.epochs=2"], capsys)
    assert code == 2 and "--resume uses the run's saved config" in err
    code, _, err = run(cache_features.main, ["--set", "data.feature_cache="], capsys)
    assert code == 2 and "data.feature_cache is empty" in err


def test_evaluation_errors_name_its_flags(capsys):
    code, _, err = run(evaluate.main, ["--checkpoint", str(BUNDLED_CHECKPOINT), "--device", "cpu", "--beam-size", "0"], capsys)
    assert code == 2 and err.startswith("usage: ")
    assert "error: --beam-size must be >= 1, got 0" in err
    code, _, err = run(evaluate.main, ["--checkpoint", str(BUNDLED_CHECKPOINT), "--batch-size", "0"], capsys)
    assert code == 2 and "argument --batch-size: must be >= 1, got 0" in err
    code, _, _ = run(evaluate.main, ["--checkpoint", str(BUNDLED_CHECKPOINT), "--device", "cpu", "--data", "no/such"], capsys)
    assert code == f"error: no/such: dataset folder (--data) not found (relative to {Path.cwd()})"
