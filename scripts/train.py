#!/usr/bin/env python
"""Train a VAE on a folder of face images: the same code as `cvae train`.

    python scripts/train.py --data ../shared/faces/utkface/train \
        --val-data ../shared/faces/utkface/val --preset faces --epochs 30 --out runs/faces
"""

import sys

from cvae.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
