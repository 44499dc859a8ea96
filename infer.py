"""Caption images: `python infer.py PATH... [--checkpoint CKPT] [--beam-size 5] [--json]`."""

from captioner.cli.caption import main

if __name__ == "__main__":
    main()
