#!/usr/bin/env python
"""Frame a folder of face photos like the training data, once, into a .npy
array that `cvae train --data` reads without aligning again.

Aligning runs the face detector on every photo (about 75 ms for a small one
on one core), so aligning CelebA inside every training run would cost half
an hour of the run's core. This does it once, on all cores, and leaves out
the held-out share that `scripts/results.py` reports on (chosen by the same
hash of the file name), so the array can never leak the test faces into
training. Photos in which no face is found are left out (`--align on`).

    python scripts/align_dataset.py ../shared/faces/celeba_small \
        -o runs/celeba-train-aligned.npy
"""

import argparse
import sys

import numpy as np
from repository import CELEBA_HELD_OUT

from cvae.atomic import atomic_path
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets, image_files
from cvae.errors import CvaeError, run_script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("source", help="folder of face photos")
    parser.add_argument("-o", "--out", required=True, help="the .npy array to write")
    parser.add_argument("--held-out", type=float, default=CELEBA_HELD_OUT,
                        help="share of the folder (by a hash of each file name) left out")
    parser.add_argument("--image-size", type=positive_int, default=128, help="side of the crops")
    args = parser.parse_args(argv)
    if not args.out.endswith(".npy"):
        raise CvaeError(f"--out must end in .npy, got {args.out}")
    if not 0 <= args.held_out < 1:
        raise CvaeError(f"--held-out must be in [0, 1), got {args.held_out}")
    train, held_out = datasets.read_dataset(args.source, args.image_size,
                                            framing=image_files.Framing(align="on"),
                                            validation_fraction=args.held_out, progress=True)
    with atomic_path(args.out) as path:
        with open(path, "wb") as file:
            np.save(file, train)
    print(f"wrote {len(train)} aligned faces to {args.out} "
          f"({len(held_out)} held out)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
