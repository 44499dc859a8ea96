"""`captioner-demo`: the Gradio page that captions an image and shows where the model looked per word.

Xu et al. (2015, §5.4, Fig. 2-3) show each word of a caption with its attention map alpha_t upsampled
over the image; this page does the same, interactively. Layout, top to bottom:

    what the model knows (from the checkpoint's meta) | image input, examples, a random shapes scene,
    decoding options, Caption | the caption; its words shaded by how peaked their attention is;
    the selected word's overlay and a slider that scrubs the words | a strip of every word's overlay |
    the n-best list and the downloads (a PNG grid and a GIF of all overlays)

Clicking a word or a strip thumbnail, or dragging the slider, shows that word's overlay; a click also
moves the slider to that word. The focused overlay is a plain `gr.Image` of `overlay_attention`
rather than a `gr.AnnotatedImage`: it is the same heat ramp as the strip and the downloads, and the
browser gets one ready-made PNG per click instead of an image plus a mask to blend.

The only public API endpoint is `/caption` (data only: caption, words with scores, overlays, n-best,
files); every UI-only event is private. The handlers are in `captioner/demo_handlers.py`.
"""

import argparse
import sys
from pathlib import Path

import gradio as gr

from captioner.checkpoint import CheckpointError
from captioner.config import ConfigError
from captioner.cli.caption import BUNDLED_CHECKPOINT
from captioner.decoding import LENGTH_PENALTIES
from captioner.demo_handlers import BEAM_SIZES, MAX_LENGTHS, NBEST_HEADERS, CaptionDemo, WordAttention, random_scene
from captioner.training import resolve_device

EXAMPLES_DIR = BUNDLED_CHECKPOINT.parent / "examples" / "images"  # a shapes test split, truth beside it
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg")
QUEUE = dict(default_concurrency_limit=2, max_size=32)  # two captions at once, 32 waiting at most
MAX_FILE_SIZE = "50mb"  # uploads above this are refused before they reach the handler
# A shapes scene is 128 pixels wide: let the input and the focused overlay fill their boxes.
CSS = "#input-image img, #focus-image img { width: 100%; height: 100%; object-fit: contain; }"
INTRO = (
    "# Show, Attend and Tell\n"
    "Upload a picture and press **Caption**. The model writes the caption one word at a time, and "
    "for every word it looks at some parts of the image more than others "
    "([Xu et al. 2015](https://arxiv.org/abs/1502.03044)). Click a word, a thumbnail of the strip, or "
    "move the slider to see where it looked. Words are shaded by how focused that look was "
    "(1 - normalized entropy of the attention map: dark = one spot, pale = spread out)."
)


def example_images(folder: Path = EXAMPLES_DIR) -> list[str]:
    """The example images of `folder`, sorted; none when it is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES and p.is_file())


def focus_update(attention: WordAttention | None, index) -> dict:
    """The focused overlay for word `index`, labelled with the word. Updates are `gr.update` dicts:
    a `gr.Image(value=...)` would encode the overlay once more, as WebP, when it is constructed."""
    if attention is None or index is None:
        return gr.skip()
    if not attention.words:
        return gr.update(value=attention.image, label="No words: the caption is empty")
    t = min(max(int(index), 0), len(attention.words) - 1)
    label = f'Where the model looked for "{attention.words[t]}" (word {t + 1} of {len(attention.words)})'
    return gr.update(value=attention.overlay(t), label=label)


def show_first(attention: WordAttention | None):
    """After a caption: focus on its first word and give the slider one stop per word."""
    if attention is None:
        return gr.skip(), gr.skip()
    last = max(len(attention.words) - 1, 0)
    return focus_update(attention, 0), gr.update(minimum=0, maximum=last, value=0, interactive=last > 0)


def select_word(attention: WordAttention | None, evt: gr.SelectData):
    """A click on a word token or a strip thumbnail: focus on it and move the slider there."""
    if attention is None or evt.index is None:
        return gr.skip(), gr.skip()
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return focus_update(attention, index), int(index)


def create_demo(checkpoint: str | Path = BUNDLED_CHECKPOINT, device="cpu", *, examples_dir: str | Path = EXAMPLES_DIR,
                demo: CaptionDemo | None = None) -> gr.Blocks:
    """The page for `checkpoint`, loaded once (or for an already loaded `demo`), queued with QUEUE.

    Raises CheckpointError naming the file when the checkpoint is missing or not a checkpoint.
    """
    demo = demo or CaptionDemo.from_checkpoint(checkpoint, device)
    decode = demo.config.decode
    beam_default, length_default = demo.default_options()
    with gr.Blocks(title="Show, Attend and Tell", delete_cache=(3600, 3600)) as page:
        gr.Markdown(INTRO)
        gr.Markdown(demo.model_note(), elem_id="model-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
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
                words = gr.HighlightedText(label="Words (click one)", show_legend=False, combine_adjacent=False,
                                           show_inline_category=False, elem_id="words")
                focus = gr.Image(label="Where the model looked", type="pil", format="png", interactive=False,
                                 height=360, buttons=["download", "fullscreen"], elem_id="focus-image")
                slider = gr.Slider(0, 1, value=0, step=1, label="Word", interactive=False, elem_id="word-slider")
        gallery = gr.Gallery(label="Every word", columns=12, fit_columns=False, height=230, format="png",
                             allow_preview=False, buttons=["download_all"], elem_id="gallery")
        with gr.Row():
            n_best = gr.Dataframe(headers=NBEST_HEADERS, label="n-best captions (beam search)", interactive=False,
                                  wrap=True, column_widths=["7%", "48%", "16%", "16%", "13%"], scale=2,
                                  elem_id="n-best")
            files = gr.File(label="Download: overlay grid (PNG) and animation (GIF)", file_count="multiple",
                            interactive=False, scale=1, elem_id="downloads")
        attention = gr.State()

        # The one public endpoint, data only. preprocess=False hands the handler the uploaded file, so
        # it is read by the project's loader: header size check first, clear errors for non-images.
        captioned = run.click(demo.caption, inputs=[image, beam, penalty, length],
                              outputs=[text, words, gallery, n_best, files, attention], api_name="caption",
                              preprocess=False)
        captioned.success(show_first, inputs=attention, outputs=[focus, slider], api_visibility="private", queue=False)
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
        description="Serve the Show, Attend and Tell demo page.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT),
                        help="checkpoint file; the default is the bundled shapes model")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs the internet)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    try:
        page = create_demo(args.checkpoint, resolve_device(args.device))
    except CheckpointError as error:
        hint = "; pass --checkpoint FILE" if args.checkpoint == str(BUNDLED_CHECKPOINT) else ""
        sys.exit(f"error: {error}{hint}")
    except ConfigError as error:
        sys.exit(f"error: {error}")
    launch(page, args.host, args.port, args.share)


if __name__ == "__main__":
    main()
