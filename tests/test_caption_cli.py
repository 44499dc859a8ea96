import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioner.cli.caption import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def images(shapes_dir, tmp_path):
    """Two good images in a folder, plus a truncated one and a text file posing as an image."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("train_000001.jpg", "train_000002.jpg"):
        (folder / name).write_bytes((shapes_dir / "images" / name).read_bytes())
    good = (shapes_dir / "images" / "train_000003.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "notes.png").write_text("not an image")
    return folder, tmp_path / "cut.jpg", tmp_path / "notes.png"


def run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_plain_output_for_a_folder_and_a_glob(tiny_checkpoint, images, capsys):
    folder, _, _ = images
    code, out, _ = run(capsys, folder, str(folder / "*_000001.jpg"), "--checkpoint", tiny_checkpoint)
    lines = [line.split("\t") for line in out.splitlines()]
    assert code == 0
    assert [Path(path).name for path, _ in lines] == ["train_000001.jpg", "train_000002.jpg", "train_000001.jpg"]
    assert lines[0][1] == lines[2][1]  # the same image gets the same caption


def test_bad_files_are_reported_and_the_rest_captioned(tiny_checkpoint, images, capsys):
    folder, cut, notes = images
    code, out, err = run(capsys, cut, folder / "train_000001.jpg", notes, "missing.jpg", "--checkpoint", tiny_checkpoint, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    errors = {Path(row["image"]).name if row["image"] else None: row["error"] for row in rows if "error" in row}
    assert set(errors) == {"cut.jpg", "notes.png", None}
    assert "missing.jpg" in errors[None] and "cut.jpg" in errors["cut.jpg"]
    captioned = [row for row in rows if "caption" in row]
    assert [Path(row["image"]).name for row in captioned] == ["train_000001.jpg"]
    assert err.count("error:") == 3


def test_json_with_attention_maps(tiny_checkpoint, images, capsys):
    folder, _, _ = images
    code, out, _ = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--json", "--with-attention", "--beam-size", "3")
    assert code == 0
    for row in map(json.loads, out.splitlines()):
        assert row["caption"] == " ".join(row["words"])
        assert row["score"] <= 0
        attention = np.array(row["attention"])
        assert attention.shape == (len(row["words"]), 4, 4)
        np.testing.assert_allclose(attention.sum((1, 2)), 1.0, atol=1e-5)


def test_n_best_lines_carry_rank_and_score_and_attention_files(tiny_checkpoint, images, capsys, tmp_path):
    folder, _, _ = images
    out_dir = tmp_path / "overlays"
    code, out, _ = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--beam-size", "3", "--n-best", "2", "--attention-dir", out_dir)
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(Path(path).name, rank) for path, rank, _, _ in lines] == [
        ("train_000001.jpg", "1"), ("train_000001.jpg", "2"), ("train_000002.jpg", "1"), ("train_000002.jpg", "2")
    ]
    for first, second in (lines[:2], lines[2:]):
        assert 0 >= float(first[2]) >= float(second[2])  # no length penalty: ranked by log-probability
    code, out, _ = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--beam-size", "3", "--n-best", "2", "--json")
    for row in map(json.loads, out.splitlines()):
        assert [entry["rank"] for entry in row["n_best"]] == [1, 2]
        assert row["n_best"][0]["caption"] == row["caption"] and row["n_best"][0]["score"] == row["score"]
    gif = Image.open(out_dir / "train_000001_attention.gif")
    assert Image.open(out_dir / "train_000001_attention.png").format == "PNG" and gif.format == "GIF"


def test_bad_options_and_checkpoints_are_clear_errors(tiny_checkpoint, images, capsys, tmp_path):
    folder, _, _ = images
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--n-best", "3")
    assert code == 2 and err.startswith("usage: ")
    assert "error: --n-best must be in 1..--beam-size (1), got 3" in err
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--sample", "--temperature", "0")
    assert code == 2 and "error: --temperature must be > 0" in err
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--device", "gpu0")
    assert code == 2 and "argument --device: device 'gpu0'" in err
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"\0" * 10)
    code, _, _ = run(capsys, folder, "--checkpoint", bogus)
    assert "bogus.pt" in str(code)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_repeats_with_its_seed_on_the_models_device(tiny_checkpoint, images, capsys, device):
    folder, _, _ = images
    flags = ["--checkpoint", tiny_checkpoint, "--sample", "--temperature", "3", "--n-best", "4", "--device", device]
    drawn = {seed: [run(capsys, folder, *flags, "--seed", seed) for _ in range(2)] for seed in (1, 2)}
    for seed, (first, second) in drawn.items():
        assert first[0] == 0 and first == second
    assert drawn[1][0][1] != drawn[2][0][1]


def test_infer_script_runs_as_a_program(tiny_checkpoint, images):
    folder, _, _ = images
    done = subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), str(folder), "--checkpoint", str(tiny_checkpoint)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2


def test_the_caption_command_imports_no_module_it_does_not_need():
    heavy = ["torchvision.models", "gradio", "pycocoevalcap", "pycocoevalcap.tokenizer.ptbtokenizer"]
    code = f"import sys, captioner.cli.caption; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
