"""The demo page: its handlers called directly, then the page served in-process and called with
gradio_client, the way an API user sees it (the browser tier is in test_app_browser.py)."""

import math

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from captioner.app import create_demo, example_images, focus_update, main, select_word, show_first
from captioner.checkpoint import CheckpointError
from captioner.demo_handlers import (
    MAX_DISPLAY_SIDE,
    N_BEST,
    NBEST_HEADERS,
    CaptionDemo,
    ModelChoice,
    WordAttention,
    display_copy,
    focus_level,
    peakedness,
    random_scene,
)
from captioner.inference import caption_files


@pytest.fixture(scope="session")
def scene_file(tmp_path_factory):
    """A shapes scene squashed to 150 x 90, so that a swapped (W, H) would show."""
    path = tmp_path_factory.mktemp("app_images") / "scene.png"
    random_scene(np.random.default_rng(7)).resize((150, 90)).save(path)
    return path


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory):
    """A text file posing as an image, and a 56-megapixel 1-bit PNG (a few kB on disk)."""
    folder = tmp_path_factory.mktemp("bad_images")
    (folder / "notes.png").write_text("not an image")
    Image.new("1", (8000, 7000)).save(folder / "huge.png")
    return folder / "notes.png", folder / "huge.png"


@pytest.fixture(scope="session")
def client(app_url, tmp_path_factory):
    return Client(app_url, verbose=False, download_files=str(tmp_path_factory.mktemp("client_downloads")))


# --- the handlers, no server -------------------------------------------------------------------


def test_peakedness_is_one_for_a_single_cell_and_zero_for_an_even_spread():
    one_hot = torch.zeros(16)
    one_hot[5] = 1
    two = torch.zeros(16)
    two[[1, 2]] = 0.5
    assert peakedness(one_hot) == pytest.approx(1.0)
    assert peakedness(torch.full((16,), 1 / 16)) == pytest.approx(0.0, abs=1e-12)
    assert peakedness(two) == pytest.approx(1 - math.log(2) / math.log(16))
    assert peakedness(np.full((4, 4), 1 / 16)) == pytest.approx(0.0, abs=1e-12)  # a (G, G) map reads the same


def test_caption_words_strip_details_and_downloads_agree(caption_demo, scene_file):
    image = Image.open(scene_file)
    text, words, gallery, rows, details, attention = caption_demo.caption(image)
    assert text.split() == [word for word, _ in words] == [w["word"] for w in details["words"]] == attention.words
    assert [label for _, label in gallery] == [f"{t}. {word}" for t, word in enumerate(attention.words, 1)]
    assert len(text.split()) >= 1
    focus = [w["focus"] for w in details["words"]]
    assert focus == [pytest.approx(peakedness(a), abs=1e-4) for a in attention.alphas]
    assert [level for _, level in words] == [focus_level(value) for value in focus]
    assert all(overlay.size == image.size == (150, 90) for overlay, _ in gallery)
    assert rows[0][1] == text
    without_stats = CaptionDemo(caption_demo.model, caption_demo.vocab, caption_demo.config, {})
    assert without_stats.caption(image)[4]["outside_training"] is None  # no feature statistics: no verdict
    png, gif = (Image.open(path) for path in caption_demo.downloads(attention))
    assert (png.format, gif.format, gif.n_frames) == ("PNG", "GIF", len(attention.words))


def test_focus_levels_run_from_spread_out_to_one_spot():
    assert [focus_level(v) for v in (0.0, 0.19, 0.2, 0.5, 0.99, 1.0)] == [
        "spread out", "spread out", "broad", "focused", "one spot", "one spot"]


def test_a_changed_input_is_captioned_or_clears_every_output(caption_demo, scene_file, bad_files):
    empty = ("", [], [], [], None, None)
    assert caption_demo.caption_or_clear(None) == empty
    notes, _ = bad_files
    with pytest.warns(UserWarning, match="'notes.png': not an image"):  # on the page: a warning toast
        assert caption_demo.caption_or_clear({"path": str(notes), "orig_name": "notes.png"}) == empty
    text, *_ = caption_demo.caption_or_clear(Image.open(scene_file))
    assert text == caption_demo.caption(Image.open(scene_file))[0]


def test_app_caption_equals_the_cli_engine_on_the_same_file(caption_demo, scene_file):
    """The app reads and preprocesses an image as caption_files (the CLI, evaluation) does."""
    decode = caption_demo.decode_config(3, "none", 8)
    upload = {"path": str(scene_file), "orig_name": "scene.png"}  # what the page hands the handler
    _, _, _, rows, _, attention = caption_demo.caption(upload, 3, "none", 8)
    model, vocab, image_size = caption_demo.model, caption_demo.vocab, caption_demo.config.data.image_size
    (result,) = caption_files(model, vocab, [scene_file], image_size, decode)
    best = result.hypotheses[0]
    assert attention.words == caption_demo.vocab.decode(best.tokens)
    assert rows[0][2] == pytest.approx(best.score, abs=1e-4)
    np.testing.assert_allclose(attention.alphas, best.alphas.numpy(), atol=1e-6)


def test_n_best_is_sorted_and_at_most_five(caption_demo, scene_file):
    image = Image.open(scene_file)
    rows = caption_demo.caption(image, 7, "none", 8)[3]
    assert 1 < len(rows) <= N_BEST
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
    log_probs = [row[2] for row in rows]
    assert log_probs == sorted(log_probs, reverse=True)
    assert [row[3] for row in rows] == log_probs  # no penalty: ranked by the log-probability itself
    assert len(rows[0]) == len(NBEST_HEADERS)
    ranked = [row[3] for row in caption_demo.caption(image, 4, "average", 8)[3]]
    assert ranked == sorted(ranked, reverse=True)
    assert len(caption_demo.caption(image, 2, "none", 8)[3]) <= 2


def test_caption_errors_name_the_problem(caption_demo, scene_file, bad_files):
    notes, huge = bad_files
    with pytest.raises(gr.Error, match="Please upload an image"):
        caption_demo.caption(None)
    with pytest.raises(gr.Error, match="too large: 8000 x 7000"):
        caption_demo.caption(Image.new("1", (8000, 7000)))  # PIL image: checked by to_rgb
    with pytest.raises(gr.Error, match="huge.png.*too large") as error:
        caption_demo.caption({"path": str(huge), "orig_name": "huge.png"})  # upload: checked from the header
    assert str(huge.parent) not in str(error.value)  # the server's paths stay private
    with pytest.raises(gr.Error, match="'notes.png': not an image"):
        caption_demo.caption({"path": str(notes), "orig_name": "notes.png"})
    with pytest.raises(gr.Error, match="Beam size must be a whole number from 1 to 10"):
        caption_demo.caption(Image.open(scene_file), 0, "none", 8)
    with pytest.raises(gr.Error, match="Length penalty must be one of none, average, gnmt"):
        caption_demo.caption(Image.open(scene_file), 2, "longest", 8)


def test_large_images_are_drawn_on_a_smaller_copy_with_the_same_shape():
    image = Image.new("RGB", (2 * MAX_DISPLAY_SIDE, MAX_DISPLAY_SIDE))
    assert display_copy(image).size == (MAX_DISPLAY_SIDE, MAX_DISPLAY_SIDE // 2)
    small = Image.new("RGB", (300, 200))
    assert display_copy(small) is small


def test_word_selectors_focus_the_chosen_word_and_move_the_slider():
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (40, 30), (90, 90, 90))
    alphas = rng.dirichlet(np.ones(16), size=3)  # (T, P)
    attention = WordAttention(image, ["a", "red", "circle"], alphas)
    focus, slider, warning, files = show_first(attention, None)
    assert (slider["minimum"], slider["maximum"], slider["value"]) == (1, 3, 1)
    assert focus["label"].startswith("Word 1 of 3") and warning["visible"] is False and files is None
    assert np.array_equal(np.asarray(focus["value"]), np.asarray(attention.overlay(0)))
    focus, number = select_word(attention, gr.SelectData(None, {"index": 2, "value": ["circle", 0.3]}))
    assert number == 3 and focus["label"] == 'Word 3 of 3: where the model looked for "circle"'
    assert np.array_equal(np.asarray(focus["value"]), np.asarray(attention.overlay(2)))
    assert not np.array_equal(np.asarray(focus["value"]), np.asarray(attention.overlay(1)))
    assert "circle" in focus_update(attention, 99)["label"]  # out of range clamps to the last word
    focus, slider, warning, files = show_first(None, None)  # a cleared input clears the focus too
    assert focus["value"] is None and slider["value"] == 1 and files is None
    empty = WordAttention(image, [], np.zeros((0, 16)))  # a caption of no words shows the plain image
    focus, slider, *_ = show_first(empty, None)
    assert focus["value"] is image and (slider["maximum"], slider["interactive"]) == (1, False)
    outside = {"outside_training": True, "novelty": 9.5, "novelty_threshold": 2.0}
    warning = show_first(attention, outside)[2]
    assert warning["visible"] is True and "Outside the model's world" in warning["value"] and "9.5" in warning["value"]


def test_model_note_shows_the_checkpoint_meta(caption_demo, app_checkpoint):
    note = caption_demo.model_note()
    assert "Trained on" in note and "attention grid" in note
    meta = {"name": "Shapes model", "trained_on": "10,000 synthetic shapes scenes",
            "metrics": {"BLEU-4": 41.234, "pointing_accuracy": 0.8764}, "notes": "It knows only the shapes world."}
    demo = CaptionDemo(caption_demo.model, caption_demo.vocab, caption_demo.config, {"meta": meta})
    note = demo.model_note()
    for text in ("Shapes model", "10,000 synthetic shapes scenes", "BLEU-4 41.2", "pointing_accuracy 0.876",
                 "It knows only the shapes world."):
        assert text in note


def test_examples_are_the_sorted_images_of_the_folder(example_dir, tmp_path, caption_demo):
    assert [p.rsplit("/", 1)[1] for p in example_images(example_dir)] == ["a_scene.jpg", "b_scene.png"]
    assert example_images(tmp_path / "missing") == []
    page = create_demo(demo=caption_demo, examples_dir=tmp_path)  # empty folder: no Examples block
    assert "dataset" not in [c["type"] for c in page.config["components"]]


def test_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="does not exist"):
        create_demo(tmp_path / "none.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "none.pt")])
    assert "none.pt does not exist" in str(exit_info.value.code)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "junk.pt")])
    assert "junk.pt is not a PyTorch checkpoint: it is a text file" in str(exit_info.value.code)


# --- the page served, called with gradio_client ------------------------------------------------


def test_the_only_api_endpoint_is_caption(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/caption"]
    assert api["unnamed_endpoints"] == {}
    parameters = api["named_endpoints"]["/caption"]["parameters"]
    assert [p["label"] for p in parameters] == [
        "Image", "Beam size", "Length penalty", "Max length (words)", "Model: its kind of attention"]
    assert parameters[-1]["parameter_has_default"] and parameters[-1]["parameter_default"] == "additive"


def test_the_model_picker_captions_with_the_model_named(client, caption_demo, hard_demo, scene_file):
    for name, demo in (("additive", caption_demo), ("hard", hard_demo)):
        text, words, gallery, _, details = client.predict(handle_file(str(scene_file)), 2, "none", 8, name,
                                                          api_name="/caption")
        expected = demo.caption(Image.open(scene_file), 2, "none", 8)
        assert text == expected[0] and details == expected[4]
        assert len(gallery) == len(text.split())
    with pytest.raises(AppError, match="Model must be one of additive, hard, got 'dot'"):
        client.predict(handle_file(str(scene_file)), 2, "none", 8, "dot", api_name="/caption")


def test_models_are_named_by_their_attention_or_else_their_file(caption_demo, hard_demo):
    twin = CaptionDemo(caption_demo.model, caption_demo.vocab, caption_demo.config, {}, name="twin.pt")
    models = ModelChoice([caption_demo, hard_demo, twin, twin])
    assert list(models.demos) == ["additive", "hard", "twin.pt", "twin.pt (4)"] and models.default == "additive"
    assert models.choices()[:2] == [("soft attention, additive scores (the paper's)", "additive"),
                                    ("hard attention, one cell per word (the paper's)", "hard")]
    assert models.get(None) is caption_demo and models.get("hard") is hard_demo


def test_caption_endpoint_returns_plain_data(client, caption_demo, scene_file):
    answer = client.predict(handle_file(str(scene_file)), 3, "none", 8, api_name="/caption")
    text, words, gallery, n_best, details = answer
    expected = caption_demo.caption(Image.open(scene_file), 3, "none", 8)
    assert text == expected[0]
    assert [w["token"] for w in words] == text.split() == [g["caption"].split(". ", 1)[1] for g in gallery]
    assert [w["class_or_confidence"] for w in words] == [level for _, level in expected[1]]
    assert details == expected[4]
    assert all(Image.open(g["image"]).size == (150, 90) for g in gallery)
    assert n_best["headers"] == NBEST_HEADERS and [row[1] for row in n_best["data"]] == [r[1] for r in expected[3]]
    assert not any(isinstance(x, dict) and x.get("__type__") == "update" for x in answer)


def test_errors_reach_the_client_and_the_server_keeps_serving(client, scene_file, bad_files):
    notes, huge = bad_files
    with pytest.raises(AppError, match="Please upload an image"):
        client.predict(None, 1, "none", 8, api_name="/caption")
    with pytest.raises(AppError, match="'notes.png': not an image"):
        client.predict(handle_file(str(notes)), 1, "none", 8, api_name="/caption")
    with pytest.raises(AppError, match="'huge.png'.*too large"):
        client.predict(handle_file(str(huge)), 1, "none", 8, api_name="/caption")
    with pytest.raises(AppError, match="Beam size"):
        client.predict(handle_file(str(scene_file)), 11, "none", 8, api_name="/caption")
    text, words, *_ = client.predict(handle_file(str(scene_file)), 1, "none", 8, api_name="/caption")
    assert text and text.split() == [w["token"] for w in words]


def test_a_refused_request_logs_one_line_and_no_traceback(client, bad_files, caplog, capfd):
    notes, _ = bad_files
    with caplog.at_level("WARNING", logger="captioner.demo"), pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(notes)), 1, "none", 8, api_name="/caption")
    assert [r.getMessage() for r in caplog.records if r.name == "captioner.demo"] == [
        "refused a request: Cannot read image 'notes.png': not an image file, or a format Pillow cannot read."]
    assert "Traceback" not in capfd.readouterr().err


def test_the_page_has_examples_and_decoding_defaults(app_url, caption_demo):
    page_config = Client(app_url, verbose=False).config
    components = page_config["components"]
    (examples,) = [c for c in components if c["type"] == "dataset"]
    assert len(examples["props"]["samples"]) == 2
    beam = next(c for c in components if c["props"].get("elem_id") == "beam-size")
    assert beam["props"]["value"] == caption_demo.config.decode.beam_size
