"""The demo page in a real browser: Debian's chromium driven by playwright.

Upload an image (captioned at once, with no press of *Caption*), click a word and a strip thumbnail,
and check that the focused overlay, its heading and the word slider follow, numbered 1..T. Then make
a random scene and check that the caption, the words, the heat map and the strip all belong to it,
not to the upload; and pick the second model, which recaptions the picture. The screenshot goes to tmp_path, and also to $CAPTIONER_SCREENSHOT when set (the
README's picture is made that way, with $CAPTIONER_APP_CHECKPOINT naming the bundled model).
"""

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner.data.shapes import describe, make_scene, render
from captioner.demo_handlers import STRIP_SIDE, display_copy
from captioner.visualize import overlay_attention

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
TIMEOUT_MS = 30_000  # the first caption includes the model's warm-up on a busy 2-core machine


def _unavailable(reason: str):
    """Outside CI a missing browser skips; in CI it fails, so that a skip is never read as a pass."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must install it (apt-get install -y chromium; pip install playwright)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"Debian chromium is not installed at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def distinct_scene(caption_demo, tmp_path_factory):
    """A scene whose caption has two words with different overlays, with the page's default options,
    and those word indices (i < j). A barely trained model can repeat one word with one flat map;
    then the click would not change the picture, so the test looks for a scene where it does. Of
    those, it takes the longest caption that is true of its scene (one of `describe`'s phrasings),
    if any: the screenshot shows what the model gets right, not a lucky scene."""
    path = tmp_path_factory.mktemp("browser") / "scene.png"
    found = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        scene = make_scene(rng)
        image = render(scene, rng)
        *_, attention = caption_demo.caption(image)
        overlays = [attention.overlay(t).tobytes() for t in range(len(attention.words))]
        pairs = [(i, j) for j in range(1, len(overlays)) for i in range(j) if overlays[i] != overlays[j]]
        if pairs:
            true = " ".join(attention.words) in describe(scene)
            found.append(((true, len(attention.words)), image, attention.words, pairs[0]))
    if not found:
        pytest.fail("no scene of 20 gives a caption with two different overlays: the model looks the same way every word")
    _, image, words, pair = max(found, key=lambda item: item[0])
    image.save(path)
    return path, words, pair


def _pixels(page, image_locator) -> np.ndarray:
    """The RGB pixels of the image an <img> shows, fetched from the page's server."""
    response = page.request.get(image_locator.get_attribute("src"))
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


@pytest.mark.browser
def test_click_a_word_and_a_thumbnail_to_see_where_the_model_looked(browser, app_url, distinct_scene, tmp_path):
    from playwright.sync_api import expect

    path, words, (i, j) = distinct_scene
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")  # "networkidle" never comes: the queue's SSE stays open
        page.locator("#input-image input[type=file]").set_input_files(str(path))  # no press of Caption
        expect(page.locator("#caption-text textarea")).to_have_value(" ".join(words), timeout=TIMEOUT_MS)

        slider = page.locator("#word-slider input[type=number]")
        focus = page.locator("#focus-image img")
        heading = page.locator("#focus-image")
        expect(slider).to_have_attribute("max", str(len(words)), timeout=TIMEOUT_MS)
        expect(slider).to_have_value("1")
        expect(heading).to_contain_text(f"Word 1 of {len(words)}", timeout=TIMEOUT_MS)
        expect(focus).to_have_count(1, timeout=TIMEOUT_MS)
        first_src = focus.get_attribute("src")

        tokens = page.locator("#words .token")
        expect(tokens).to_have_count(len(words))
        tokens.nth(j).click()
        expect(slider).to_have_value(str(j + 1), timeout=TIMEOUT_MS)
        expect(heading).to_contain_text(f'Word {j + 1} of {len(words)}: where the model looked for "{words[j]}"')
        src_j = focus.get_attribute("src")
        tokens.nth(i).click()
        expect(slider).to_have_value(str(i + 1), timeout=TIMEOUT_MS)
        expect(focus).not_to_have_attribute("src", src_j, timeout=TIMEOUT_MS)  # words i and j look at different places
        if i == 0:
            assert focus.get_attribute("src") == first_src  # back on the first word: its overlay again

        count = len(words)
        page.locator("#gallery").get_by_label(f"Thumbnail {count} of {count}").click()
        expect(slider).to_have_value(str(count), timeout=TIMEOUT_MS)
        expect(heading).to_contain_text(f"Word {count} of {count}")

        shots = [tmp_path / "app.png"]
        if os.environ.get("CAPTIONER_SCREENSHOT"):
            shots.append(Path(os.environ["CAPTIONER_SCREENSHOT"]))
        for shot in shots:
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        assert shots[0].stat().st_size > 10_000
    finally:
        page.close()


@pytest.mark.browser
def test_every_output_follows_a_new_random_scene(browser, app_url, caption_demo, distinct_scene):
    from playwright.sync_api import expect

    path, words, _ = distinct_scene
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.locator("#input-image input[type=file]").set_input_files(str(path))
        expect(page.locator("#caption-text textarea")).to_have_value(" ".join(words), timeout=TIMEOUT_MS)
        focus = page.locator("#focus-image img")
        expect(focus).to_have_count(1, timeout=TIMEOUT_MS)
        uploaded, first_focus = page.locator("#input-image img").get_attribute("src"), focus.get_attribute("src")

        page.locator("#random-btn").click()
        expect(page.locator("#input-image img")).not_to_have_attribute("src", uploaded, timeout=TIMEOUT_MS)
        scene = Image.fromarray(_pixels(page, page.locator("#input-image img")))
        *_, expected = caption_demo.caption(scene)
        expect(focus).not_to_have_attribute("src", first_focus, timeout=TIMEOUT_MS)  # the last output to follow

        count = len(expected.words)
        expect(page.locator("#caption-text textarea")).to_have_value(" ".join(expected.words))
        assert page.locator("#words .token").all_inner_texts() == expected.words
        expect(page.locator("#focus-image")).to_contain_text(f'Word 1 of {count}: where the model looked for "{expected.words[0]}"')
        expect(page.locator("#word-slider input[type=number]")).to_have_attribute("max", str(count))
        assert np.array_equal(_pixels(page, focus), np.asarray(expected.overlay(0)))
        thumbnails = page.locator("#gallery button.thumbnail-item")
        expect(thumbnails).to_have_count(count)
        strip = overlay_attention(display_copy(expected.image, STRIP_SIDE), expected.alphas[0])
        assert np.array_equal(_pixels(page, thumbnails.first.locator("img")), np.asarray(strip))

        page.locator("#downloads-btn").click()  # drawn only now, for the picture on the page
        expect(page.locator("#downloads")).to_contain_text(re.compile(r"caption_attention\s*\.png"), timeout=TIMEOUT_MS)
        expect(page.locator("#downloads")).to_contain_text(re.compile(r"caption_attention\s*\.gif"))
    finally:
        page.close()


@pytest.mark.browser
def test_picking_another_model_recaptions_the_picture_with_it(browser, app_url, caption_demo, hard_demo,
                                                              distinct_scene):
    from playwright.sync_api import expect

    path, words, _ = distinct_scene
    beam, length = caption_demo.default_options()  # the page's options stay as they were
    expected = hard_demo.caption(Image.open(path), beam, caption_demo.config.decode.length_penalty, length)[0].split()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.locator("#input-image input[type=file]").set_input_files(str(path))
        expect(page.locator("#caption-text textarea")).to_have_value(" ".join(words), timeout=TIMEOUT_MS)
        page.locator("#model-picker input").click()
        page.get_by_role("option", name="hard attention, one cell per word (the paper's)").click()
        expect(page.locator("#caption-text textarea")).to_have_value(" ".join(expected), timeout=TIMEOUT_MS)
        expect(page.locator("#model-note")).to_contain_text("4 x 4 attention grid", timeout=TIMEOUT_MS)
        expect(page.locator("#focus-image")).to_contain_text(f"Word 1 of {len(expected)}", timeout=TIMEOUT_MS)
        expect(page.locator("#gallery button.thumbnail-item")).to_have_count(len(expected))
    finally:
        page.close()
