#!/usr/bin/env python
"""Where the aligner's detector puts the face box and the eyes in training
images: the numbers behind `cvae.data.align.FRAMING`.

Runs `cvae.data.align.locate_face` (the aligner's own detection, so photo and
training data are measured alike) over a folder of training crops and prints
the mean and standard deviation of the face box's centre and width and of the
eye distance, as fractions of the image side, ready to paste into FRAMING.

    python research/alignment/measure_framing.py --data ../shared/faces/utkface/train
"""

import argparse
import json
import math
import sys

import numpy as np
from PIL import Image

from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data.align import locate_face
from cvae.data.image_files import list_image_files
from cvae.errors import CvaeError, run_script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="folder of aligned training crops")
    parser.add_argument("--max-images", type=positive_int,
                        help="measure at most this many images (every n-th file)")
    args = parser.parse_args(argv)
    paths = list_image_files(args.data)
    if not paths:
        raise CvaeError(f"no images found in {args.data}")
    if args.max_images and len(paths) > args.max_images:
        paths = paths[::math.ceil(len(paths) / args.max_images)]
    rows, eyes, missed = [], [], 0
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as picture:
                image = np.asarray(picture.convert("RGB"))
        except OSError:
            missed += 1
            continue
        face = locate_face(image)
        if face is None:
            missed += 1
            continue
        side = float(image.shape[1])
        rows.append((face.center[0] / side, face.center[1] / side, face.width / side))
        if face.eyes is not None:
            (lx, ly), (rx, ry) = face.eyes
            eyes.append(math.hypot(rx - lx, ry - ly) / side)
        if (index + 1) % 1000 == 0:
            print(f"{index + 1}/{len(paths)} images", file=sys.stderr, flush=True)
    if not rows:
        raise CvaeError(f"no face found in any of the {len(paths)} images")
    rows = np.array(rows)
    framing = {name: (round(float(rows[:, k].mean()), 4), round(float(rows[:, k].std()), 4))
               for k, name in enumerate(("face_center_x", "face_center_y", "face_width"))}
    framing["eye_distance"] = (round(float(np.mean(eyes)), 4), round(float(np.std(eyes)), 4))
    print(json.dumps({"images": len(paths), "faces_found": len(rows), "eyes_found": len(eyes),
                      "unreadable_or_no_face": missed, "FRAMING": framing}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
