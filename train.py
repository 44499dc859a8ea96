"""Train a captioner: `python train.py --config configs/shapes.yaml [--set section.key=value ...]`."""

from captioner.cli.train import main

if __name__ == "__main__":
    main()
