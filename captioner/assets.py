"""Where the files bundled with the package lie: the shapes model and its example scenes."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
BUNDLED_CHECKPOINT = ASSETS_DIR / "shapes_model.pt"  # trained on the synthetic shapes world
# The page's models: the paper's soft attention (the default), then other kinds trained the same way.
BUNDLED_MODELS = (BUNDLED_CHECKPOINT, ASSETS_DIR / "shapes_hard.pt", ASSETS_DIR / "shapes_dot.pt")
EXAMPLES_ROOT = ASSETS_DIR / "examples"  # a shapes test split: captions_test.json, instances_test.json
EXAMPLES_DIR = EXAMPLES_ROOT / "images"  # its images
