"""`captioner-demo`: the Gradio page that captions an image and shows where the model looked per word.

Xu et al. (2015, §5.4, Fig. 2-3) show each word of a caption with its attention map alpha_t upsampled
over the image; this page does the same, interactively. Layout, top to bottom:

    what the model knows (from the checkpoint's meta) | the model picker (its kind of attention), image
    input, examples, a random shapes scene, decoding options, Caption | the caption, and a warning
    when the picture lies outside the model's world; its words shaded by how focused their attention
    is; the selected word's overlay and a slider that scrubs the words | a strip of every word's overlay | the n-best list, the details
    (each word's focus, the image's novelty) and the downloads (a PNG grid and a GIF, on demand)

Every change of the input (upload, paste, webcam, example, random scene, clear) captions the new
picture at once, or clears every output: no caption ever stands beside a picture it does not
belong to. *Caption* recomputes with changed decoding options. Words are numbered 1..T everywhere:
the slider, the overlay's heading and the strip. Clicking a word or a strip thumbnail, or dragging
the slider, shows that word's overlay; a click also moves the slider to that word. The focused
overlay is a plain `gr.Image` of `overlay_attention` rather than a `gr.AnnotatedImage`: it is the
same heat ramp as the strip and the downloads, and the browser gets one ready-made PNG per click
instead of an image plus a mask to blend.

The only public API endpoint is `/caption` (data only: caption, words with focus levels, overlays,
n-best, details; its last input names the model, the default when left out); every UI-only event is
private. Picking another model recaptions the picture with it. The handlers are in `captioner/demo_handlers.py`.
"""

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from captioner.assets import BUNDLED_MODELS, EXAMPLES_DIR
from captioner.checkpoint import CheckpointError
from captioner.cli import HelpFormatter
from captioner.config import ConfigError
from captioner.decoding import LENGTH_PENALTIES
from captioner.demo_handlers import (
    BEAM_SIZES,
    FOCUS_COLORS,
    MAX_LENGTHS,
    NBEST_HEADERS,
    CaptionDemo,
    ModelChoice,
    WordAttention,
    random_scene,
)
from captioner.devices import resolve_device

EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg")
QUEUE = {"default_concurrency_limit": 2, "max_size": 32}  # two captions at once, 32 waiting at most
MAX_FILE_SIZE = "50mb"  # uploads above this are refused before they reach the handler
# A shapes scene is 128 pixels wide: let the input and the focused overlay fill their boxes.
CSS = "#input-image img, #focus-image img { width: 100%; height: 100%; object-fit: contain; }"
INTRO = (
    "# Show, Attend and Tell\n"
    "Upload a picture, pick an example or make a random scene: it is captioned at once. The model "
    "writes the caption one word at a time, and for every word it looks at some parts of the image "
    "more than others ([Xu et al. 2015](https://arxiv.org/abs/1502.03044)). Click a word, a thumbnail "
    "of the strip, or move the slider to see where it looked. Words are shaded by how focused that "
    "look was, from *spread out* (pale) to *one spot* (dark): 1 - the normalized entropy of the "
    "attention map."
)
OUTSIDE = ("**Outside the model's world:** this picture looks unlike the images the model was trained on "
           "(novelty {novelty:.1f}, threshold {threshold:.1f}), so the caption is likely wrong.")


def example_images(folder: Path = EXAMPLES_DIR) -> list[str]:
    """The example images of `folder`, sorted; none when it is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES and p.is_file())


def focus_update(attention: WordAttention | None, number) -> dict:
    """The focused overlay for word `number` (1..T), labelled with the word. Updates are `gr.update`
    dicts: a `gr.Image(value=...)` would encode the overlay once more, as WebP, when it is constructed."""
    if attention is None or number is None:
        return gr.skip()
    if not attention.words:
        return gr.update(value=attention.image, label="No words: the caption is empty")
    t = min(max(int(number), 1), len(attention.words))
    label = f'Word {t} of {len(attention.words)}: where the model looked for "{attention.words[t - 1]}"'
    return gr.update(value=attention.overlay(t - 1), label=label)


def show_first(attention: WordAttention | None, details: dict | None):
    """After a caption, or a cleared one: focus on the first word, give the slider one stop per word,
    warn when the picture is outside the model's world, and drop the previous downloads."""
    if attention is None:
        return (gr.update(value=None, label="Where the model looked"), gr.update(minimum=1, maximum=1, value=1, interactive=False),
                gr.update(value="", visible=False), None)
    count = max(len(attention.words), 1)
    outside = bool(details and details.get("outside_training"))
    warning = OUTSIDE.format(novelty=details["novelty"], threshold=details["novelty_threshold"]) if outside else ""
    return (focus_update(attention, 1), gr.update(minimum=1, maximum=count, value=1, interactive=count > 1),
            gr.update(value=warning, visible=outside), None)


def select_word(attention: WordAttention | None, evt: gr.SelectData):
    """A click on a word token or a strip thumbnail (indexed from 0): focus on it and move the slider
    there (numbered from 1)."""
    if attention is None or evt.index is None:
        return gr.skip(), gr.skip()
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return focus_update(attention, int(index) + 1), int(index) + 1


def create_demo(checkpoints: str | Path | Sequence[str | Path] = BUNDLED_MODELS, device="cpu", *,
                examples_dir: str | Path = EXAMPLES_DIR, demo: CaptionDemo | Sequence[CaptionDemo] | None = None,
                ) -> gr.Blocks:
    """The page for `checkpoints` (the first is the default model), each loaded once, or for already
    loaded `demo`s; queued with QUEUE. With several models a picker chooses among them.

    Raises CheckpointError naming the file when a checkpoint is missing or not a checkpoint.
    """
    if demo is None:
        paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
        demo = [CaptionDemo.from_checkpoint(path, device) for path in paths]
    models = ModelChoice([demo] if isinstance(demo, CaptionDemo) else list(demo))
    default = models.get(None)
    decode = default.config.decode
    beam_default, length_default = default.default_options()
    with gr.Blocks(title="Show, Attend and Tell", delete_cache=(3600, 3600)) as page:
        gr.Markdown(INTRO)
        note = gr.Markdown(default.model_note(), elem_id="model-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                model = gr.Dropdown(models.choices(), value=models.default, label="Model: its kind of attention",
                                    info="the same image through another model shows where that kind looks",
                                    visible=len(models.demos) > 1, elem_id="model-picker")
                image = gr.Image(type="pil", sources=["upload", "clipboard", "webcam"], format="png", height=320,
                                 label="Image", elem_id="input-image")
                with gr.Row():
                    scene = gr.Button("Random shapes scene", elem_id="random-btn")
                    run = gr.Button("Caption", variant="primary", elem_id="caption-btn")
                with gr.Accordion("Decoding", open=True):
                    beam = gr.Slider(*BEAM_SIZES, value=beam_default, step=1, label="Beam size",
                                     info="1 = greedy; the n-best list shows up to 5", elem_id="beam-size")
                    penalty = gr.Radio(list(LENGTH_PENALTIES), value=decode.length_penalty, label="Length penalty",
                                       info="how finished captions are ranked", elem_id="length-penalty")
                    length = gr.Slider(*MAX_LENGTHS, value=length_default, step=1, label="Max length (words)",
                                       elem_id="max-length")
                examples = example_images(examples_dir)
                if examples:
                    gr.Examples(examples, inputs=image, cache_examples=False, api_visibility="private",
                                examples_per_page=12)
            with gr.Column(scale=1):
                text = gr.Textbox(label="Caption", interactive=False, buttons=["copy"], elem_id="caption-text")
                warning = gr.Markdown(visible=False, elem_id="outside-warning")
                words = gr.HighlightedText(label="Words (click one), shaded by how focused the model's look was",
                                           show_legend=True, color_map=FOCUS_COLORS, combine_adjacent=False,
                                           show_inline_category=False, elem_id="words")
                focus = gr.Image(label="Where the model looked", type="pil", format="png", interactive=False,
                                 height=360, buttons=["download", "fullscreen"], elem_id="focus-image")
                slider = gr.Slider(1, 2, value=1, step=1, label="Word number", interactive=False,
                                   elem_id="word-slider")
        gallery = gr.Gallery(label="Every word", columns=12, fit_columns=False, height=230, format="png",
                             allow_preview=False, buttons=["download_all"], elem_id="gallery")
        with gr.Row():
            n_best = gr.Dataframe(headers=NBEST_HEADERS, label="n-best captions (beam search)", interactive=False,
                                  wrap=True, column_widths=["7%", "48%", "16%", "16%", "13%"], scale=2,
                                  elem_id="n-best")
            with gr.Column(scale=1):
                make_files = gr.Button("Make the downloads: overlay grid (PNG) and animation (GIF)",
                                       elem_id="downloads-btn")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        with gr.Accordion("Details (as the /caption API returns them)", open=False):
            details = gr.JSON(label="Each word's focus; the picture's novelty", elem_id="details")
        attention = gr.State()

        # The one public endpoint, data only. preprocess=False hands the handler the uploaded file, so
        # it is read by the project's loader: header size check first, clear errors for non-images.
        inputs, outputs = [image, beam, penalty, length, model], [text, words, gallery, n_best, details, attention]
        captioned = run.click(models.caption, inputs=inputs, outputs=outputs, api_name="caption", preprocess=False)
        changed = [source.change(models.caption_or_clear, inputs=inputs, outputs=outputs, preprocess=False,
                                 api_visibility="private", trigger_mode="always_last") for source in (image, model)]
        for event in (captioned, *changed):
            event.then(show_first, inputs=[attention, details], outputs=[focus, slider, warning, files],
                       api_visibility="private", queue=False)
        model.change(models.note, inputs=model, outputs=note, api_visibility="private", queue=False)
        make_files.click(models.downloads, inputs=attention, outputs=files, api_visibility="private")
        scene.click(random_scene, outputs=image, api_visibility="private", queue=False)
        words.select(select_word, inputs=attention, outputs=[focus, slider], api_visibility="private", queue=False)
        gallery.select(select_word, inputs=attention, outputs=[focus, slider], api_visibility="private", queue=False)
        slider.input(focus_update, inputs=[attention, slider], outputs=focus, api_visibility="private", queue=False,
                     trigger_mode="always_last")
    return page.queue(**QUEUE)


def launch(page: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **options):
    """Serve `page` with the app's CSS, examples folder and upload limit; `options` go to launch()."""
    return page.launch(server_name=host, server_port=port, share=share, css=CSS, allowed_paths=[str(EXAMPLES_DIR)],
                       max_file_size=MAX_FILE_SIZE, **options)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Serve the Show, Attend and Tell demo page.", formatter_class=HelpFormatter
    )
    parser.add_argument("--checkpoint", action="append", metavar="FILE",
                        help="checkpoint file; repeat it to offer several models, the first the default "
                        "(default: the bundled shapes models, the paper's soft attention first)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs the internet)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    try:
        page = create_demo(args.checkpoint or BUNDLED_MODELS, resolve_device(args.device))
    except CheckpointError as error:
        hint = "" if args.checkpoint else "; pass --checkpoint FILE"
        sys.exit(f"error: {error}{hint}")
    except ConfigError as error:
        sys.exit(f"error: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # one line per refusal
    launch(page, args.host, args.port, args.share)


if __name__ == "__main__":
    main()
