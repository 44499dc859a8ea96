"""Every way a checkpoint file can be wrong gets one line naming the file and the problem."""

import argparse
import collections
import re

import pytest
import torch

from captioner.checkpoint import CheckpointError, load_checkpoint, load_model


class RunsCode:
    """Unpickling this calls a function: what a hostile checkpoint would do."""

    def __reduce__(self):
        return (print, ("this must never be printed",))


def save(path, value, **options):
    torch.save(value, path, **options)
    return path


def cases(tmp_path):
    good = save(tmp_path / "good_archive.pt", {"format_version": 1, "weights": torch.zeros(100)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("epoch 3: loss 0.41\n")
    empty = tmp_path / "empty.pt"
    empty.touch()
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(bytes(range(7, 250)))
    return {
        "missing": (tmp_path / "missing.pt", "does not exist"),
        "empty": (empty, r"is empty \(0 bytes\)"),
        "text": (text, "not a PyTorch checkpoint: it is a text file"),
        "random bytes": (random_bytes, "not a PyTorch checkpoint: it is a file starting with"),
        "truncated": (truncated, "is truncated: its archive has no end"),
        "code": (save(tmp_path / "code.pt", {"format_version": 1, "x": RunsCode()}),
                 r"is refused: it holds a Python object \(print\), and loading it would run code"),
        "namespace": (save(tmp_path / "namespace.pt", {"args": argparse.Namespace(lr=1)}),
                      r"refused: it holds a Python object \(argparse.Namespace\)"),
        "legacy code": (save(tmp_path / "legacy.pt", {"x": RunsCode()}, _use_new_zipfile_serialization=False),
                        "is refused"),
        "state_dict": (save(tmp_path / "state_dict.pt", collections.OrderedDict(weight=torch.zeros(2))),
                       r"not a captioner checkpoint: a bare state_dict without format_version \(keys: weight\)"),
        "other dict": (save(tmp_path / "other.pt", {"epoch": 3, "net": {}}), "not a captioner checkpoint: a dict"),
        "list": (save(tmp_path / "list.pt", [torch.zeros(1)]), "holds a list, not a captioner checkpoint"),
        "version": (save(tmp_path / "v99.pt", {"format_version": 99, "model": {}}),
                    "has format version 99; this captioner reads format version 1"),
        "incomplete": (save(tmp_path / "incomplete.pt", {"format_version": 1, "model": {}}), "lacks config, vocab"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "text", "random bytes", "truncated", "code", "namespace",
                                  "legacy code", "state_dict", "other dict", "list", "version", "incomplete"])
def test_one_clear_line_naming_the_file(tmp_path, capsys, case):
    path, problem = cases(tmp_path)[case]
    with pytest.raises(CheckpointError) as raised:
        load_model(path)
    message = str(raised.value)
    assert message.startswith(f"checkpoint {path} ") and "\n" not in message
    assert re.search(problem, message), message
    assert "weights_only" not in message  # never the advice to load a file unsafely
    assert "never be printed" not in capsys.readouterr().out  # nothing of the file ran


def test_a_checkpoint_of_another_shape_does_not_match(tiny_checkpoint, tmp_path):
    state = load_checkpoint(tiny_checkpoint)
    state["model"]["decoder.embedding.weight"] = torch.zeros(3, 3)
    changed = save(tmp_path / "changed.pt", state)
    with pytest.raises(CheckpointError, match=r"changed.pt does not match this captioner"):
        load_model(changed)
