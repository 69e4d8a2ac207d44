#!/usr/bin/env python
"""Speed of the face aligner (`cvae.data.align`) on this machine.

  1. one 1-megapixel photo (the public-domain astronaut, scaled and placed
     off centre in a 1200x850 canvas): median time of `find_face` plus the
     warp to 128x128, over --repeats runs after one warm-up;
  2. a folder of such photos read with alignment (`cvae.data.image_files.load_images`,
     no placement cache) by one worker thread and by the default pool:
     photos per second, and the speed-up from running in parallel.

Writes benchmarks/align_speed.json and docs/alignment.md between the
"align-speed" markers. Run it on an otherwise idle machine.

    python -m benchmarks.align_speed
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import image_files
from cvae.data.align import find_face, warp
from cvae.errors import CvaeError, run_script
from scripts.repository import REPOSITORY_ROOT, SHOWCASE_IMAGE, replace_between_markers

CANVAS = (1200, 850)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--repeats", type=positive_int, default=50,
                        help="timed alignments of the one photo")
    parser.add_argument("--photos", type=positive_int, default=64,
                        help="photos in the folder of the second measurement")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/align_speed.json"),
                        help="the JSON file of the measurements")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/alignment.md"),
                        help="the document whose \"align-speed\" section is rewritten")
    args = parser.parse_args(argv)

    photo = portrait(0)
    if find_face(photo) is None:
        raise CvaeError("the benchmark photo's face was not found")
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        warp(photo, find_face(photo), 128)
        times.append(time.perf_counter() - start)
    single_ms = 1000 * statistics.median(times[1:])

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index in range(args.photos):
            path = Path(folder) / f"photo_{index:03d}.jpg"
            Image.fromarray(portrait(index)).save(path, quality=90)
            paths.append(path)
        rates = {}
        for workers in (1, None):
            os.environ["CVAE_CACHE"] = str(Path(folder) / f"cache-{workers}")  # A fresh cache.
            start = time.perf_counter()
            images, skipped = image_files.load_images(paths, 128, framing=image_files.Framing(align="on"),
                                                      workers=workers)
            rates[workers] = len(paths) / (time.perf_counter() - start)
            if skipped:
                raise CvaeError(f"{len(skipped)} benchmark photos had no face found")
    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "photo_pixels": CANVAS[0] * CANVAS[1], "align_ms_median": round(single_ms, 1),
               "folder_photos_per_s_one_thread": round(rates[1], 1),
               "folder_photos_per_s_parallel": round(rates[None], 1),
               "parallel_speedup": round(rates[None] / rates[1], 2)}
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    section = "\n".join([
        "| measurement | value |", "|---|---|",
        f"| align one {CANVAS[0]}×{CANVAS[1]} photo (find the face, level, crop to 128×128), "
        f"median of {args.repeats} | {results['align_ms_median']} ms |",
        f"| align a folder of {args.photos} JPEG photos (decode included), one thread | "
        f"{results['folder_photos_per_s_one_thread']} photos/s |",
        f"| the same, the loader's thread pool on {results['cpus']} cores | "
        f"{results['folder_photos_per_s_parallel']} photos/s "
        f"({results['parallel_speedup']}× one thread) |"])
    replace_between_markers(args.readme, "align-speed", section)
    print(section)
    return 0


def portrait(seed):
    """A 1-megapixel photo with the astronaut's face somewhere in it."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", CANVAS, tuple(int(v) for v in rng.integers(60, 200, 3)))
    face = Image.open(SHOWCASE_IMAGE).convert("RGB")
    side = int(rng.integers(500, 800))
    face = face.resize((side, side), Image.LANCZOS)
    canvas.paste(face, (int(rng.integers(0, CANVAS[0] - side)),
                        int(rng.integers(0, CANVAS[1] - side))))
    return np.asarray(canvas)


if __name__ == "__main__":
    sys.exit(run_script(main))
