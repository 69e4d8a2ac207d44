#!/usr/bin/env python
"""Images per second of `cvae score` on a folder, start-up included: what a
user waits for when screening a folder.

`cvae score FOLDER --json` runs --repeats times as a fresh process (after
one untimed run, so the files are in the page cache), with the photos
framed as they already are (`--align off`) and as by default (`--align
auto`, which searches each photo for its face); the median is reported. The time covers the
whole process: start-up, reading, framing, the encoder, the decoder and
the PNG size the default score needs.

Writes benchmarks/score_speed.json and docs/anomaly.md between the
"score-speed" markers. Run it on an otherwise idle machine.

    python -m benchmarks.score_speed --data ../shared/faces/utkface/val
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.processes import timed_run
from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data.image_files import list_image_files
from cvae.errors import CvaeError, run_script
from cvae.model.saving import default_model_path
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

TARGET_IMAGES_PER_SECOND = 100


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="a folder of face photos")
    parser.add_argument("--images", type=positive_int, default=1000,
                        help="how many of its images to score (the first, by name)")
    parser.add_argument("--model", default=str(default_model_path()),
                        help="the model (with its LiteRT files and MODEL.score.npz)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs of each")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/score_speed.json"),
                        help="the JSON file of the measurements")
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "docs/anomaly.md"),
                        help="the document whose \"score-speed\" section is rewritten")
    args = parser.parse_args(argv)
    files = list_image_files(args.data)[:args.images]
    if not files:
        raise CvaeError(f"no images in {args.data}")

    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "images": len(files), "repeats": args.repeats, "images_per_second": {}}
    with tempfile.TemporaryDirectory() as folder:
        # Links, not copies: the folder holds exactly the chosen images.
        for path in files:
            os.symlink(path.resolve(), Path(folder) / path.name)
        for align in ("off", "auto"):
            command = [sys.executable, "-m", "cvae.cli", "score", folder, "--json",
                       "--model", args.model, "--align", align]
            times = [timed_run(command) for _ in range(args.repeats + 1)][1:]
            results["images_per_second"][align] = round(len(files) / statistics.median(times), 1)
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    speeds = results["images_per_second"]
    met = speeds["off"] >= TARGET_IMAGES_PER_SECOND
    section = "\n".join([
        f"| `cvae score` on {len(files)} photos, start-up included (median of "
        f"{args.repeats}) | images/s |", "|---|---|",
        f"| framed already (`--align off`) | {speeds['off']:.0f} |",
        f"| found and framed (`--align auto`) | {speeds['auto']:.0f} |",
        "",
        f"Target (issue 42): {TARGET_IMAGES_PER_SECOND} images/s for a folder: "
        f"**{'met' if met else 'not met'}** on faces framed already. Measured on "
        f"{results['cpus']} CPU cores ({results['machine']}) by "
        f"`python -m benchmarks.score_speed --data {args.data}`."])
    replace_between_markers(args.doc, "score-speed", section)
    print(section)
    return 0



if __name__ == "__main__":
    sys.exit(run_script(main))
