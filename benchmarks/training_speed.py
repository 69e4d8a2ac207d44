#!/usr/bin/env python
"""Training speed as a user meets it: whole `cvae train --preset seed`
processes against whole processes of the reference slides' float32 code
(benchmarks/baseline.py), on the same faces, the same epochs and batch
size, start-up, data loading and everything each does per epoch included.

The two commands alternate for --rounds rounds; the ratio reported is the
median of the rounds' ratios (wall time of the slides' code over cvae's).
Each process may use every core. Run it on an otherwise idle machine.

Writes benchmarks/training_speed.json and docs/speed.md between the
"training-speed" markers.

    python -m benchmarks.training_speed --data ../shared/faces/utkface/train
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.processes import timed_run
from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets
from cvae.errors import run_script
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

TARGET_RATIO = 2.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="a folder of 128x128 faces")
    parser.add_argument("--images", type=positive_int, default=4000,
                        help="faces to train on (a fixed random subset)")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/training_speed.json"),
                        help="the JSON file of the measurements")
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "docs/speed.md"),
                        help="the document whose \"training-speed\" section is rewritten")
    args = parser.parse_args(argv)
    faces = datasets.read_subset(args.data, args.images, 128, seed=0)

    with tempfile.TemporaryDirectory() as folder:
        array = Path(folder) / "faces.npy"
        np.save(array, faces)
        common = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
        commands = {
            "cvae": [sys.executable, "-m", "cvae.cli", "train", "--preset", "seed",
                     "--data", str(array), *common, "--no-tensorboard", "--seed", "0",
                     "--validation-split", "0", "--out", str(Path(folder) / "run"), "--overwrite"],
            "slides": [sys.executable, "-m", "benchmarks.baseline", str(array), *common],
        }
        seconds = {name: [] for name in commands}
        for round_index in range(args.rounds):
            for name, command in commands.items():
                seconds[name].append(timed_run(command, cwd=REPOSITORY_ROOT))
            print(f"round {round_index + 1}: cvae {seconds['cvae'][-1]:.1f} s, the slides' "
                  f"code {seconds['slides'][-1]:.1f} s", flush=True)
    ratios = [slides / cvae for cvae, slides in zip(seconds["cvae"], seconds["slides"])]
    ratio = statistics.median(ratios)
    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "images": len(faces), "epochs": args.epochs, "batch_size": args.batch_size,
               "seconds": seconds, "ratios": [round(r, 3) for r in ratios],
               "median_ratio": round(ratio, 3)}
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    met = ratio >= TARGET_RATIO
    section = "\n".join([
        f"| whole process, {len(faces)} faces, {args.epochs} epochs, batch {args.batch_size} "
        f"| median wall time | faces/s |", "|---|---|---|",
        *(f"| {label} | {statistics.median(seconds[name]):.1f} s | "
          f"{len(faces) * args.epochs / statistics.median(seconds[name]):.0f} |"
          for name, label in (("cvae", "`cvae train --preset seed`"),
                              ("slides", "the slides' float32 code"))),
        "",
        f"Target (issue 40): ≥ {TARGET_RATIO:g}× the slides' code over whole processes: "
        f"**{'met' if met else 'not met'}** ({ratio:.2f}×, the median of "
        f"{', '.join(f'{r:.2f}×' for r in ratios)}). Measured on {results['cpus']} CPU "
        f"cores ({results['machine']}) by `python -m benchmarks.training_speed --data "
        f"{args.data}`."])
    replace_between_markers(args.doc, "training-speed", section)
    print(section)
    return 0



if __name__ == "__main__":
    sys.exit(run_script(main))
