#!/usr/bin/env python
"""Training speed of `cvae train` on each installed Keras backend, measured
in one run: the same preset, images and options, whole processes in
alternating rounds (TensorFlow, JAX, PyTorch, TensorFlow, ...).

Reports, per backend, the median over rounds of the training images/s
(the run's own `wall_time_s`: epochs only, start-up and data reading left
out) and of the whole process's wall time. Writes benchmarks/backends.json
and docs/speed.md between the "backends" markers.

    python -m benchmarks.backends --data ../shared/faces/utkface/train
"""

import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets
from cvae.errors import CvaeError, run_script
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="a folder of faces (or an array, a pack)")
    parser.add_argument("--images", type=positive_int, default=2000, help="faces to train on")
    parser.add_argument("--epochs", type=positive_int, default=2, help="epochs per process")
    parser.add_argument("--rounds", type=positive_int, default=2,
                        help="processes per backend, alternated")
    parser.add_argument("--preset", default="seed", help="the preset trained")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks" / "backends.json"))
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "docs" / "speed.md"),
                        help="document with a backends marked section ('' for none)")
    args = parser.parse_args(argv)
    backends = [name for name, module in BACKENDS.items() if importlib.util.find_spec(module)]
    images = datasets.read_subset(args.data, args.images, 128)
    results = {name: [] for name in backends}
    with tempfile.TemporaryDirectory() as folder:
        faces = Path(folder) / "faces.npy"
        np.save(faces, images)
        for round_index in range(args.rounds):
            for backend in backends:
                run = Path(folder) / f"{backend}-{round_index}"
                command = [sys.executable, "-m", "cvae.cli", "train", "--data", str(faces),
                           "--preset", args.preset, "--epochs", str(args.epochs),
                           "--validation-split", "0", "--no-tensorboard", "--seed", "0",
                           "--out", str(run)]
                started = time.perf_counter()
                finished = subprocess.run(command, capture_output=True, text=True,
                                          env={**os.environ, "KERAS_BACKEND": backend})
                wall = time.perf_counter() - started
                if finished.returncode != 0:
                    raise CvaeError(f"{backend}: {finished.stderr.strip().splitlines()[-1]}")
                training_s = _last_wall_time(run / "history.csv")
                results[backend].append({"images_per_s": args.epochs * len(images) / training_s,
                                         "process_s": wall})
                print(f"{backend} round {round_index + 1}: "
                      f"{results[backend][-1]['images_per_s']:.1f} images/s, {wall:.1f} s",
                      flush=True)
    summary = {name: {"images_per_s": statistics.median(r["images_per_s"] for r in rows),
                      "process_s": statistics.median(r["process_s"] for r in rows)}
               for name, rows in results.items()}
    record = {"preset": args.preset, "images": len(images), "epochs": args.epochs,
              "rounds": args.rounds, "cpu": _cpu(), "cores": len(os.sched_getaffinity(0)),
              "summary": summary, "rounds_measured": results}
    write_text(args.out, json.dumps(record, indent=2) + "\n")
    table = _table(record)
    print(table)
    if args.doc:
        replace_between_markers(Path(args.doc), "backends", table)


def _last_wall_time(history):
    with open(history, newline="") as handle:
        return float(list(csv.DictReader(handle))[-1]["wall_time_s"])


def _cpu():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def _table(record):
    base = record["summary"].get("tensorflow", {}).get("images_per_s")
    lines = [f"`cvae train --preset {record['preset']}`, {record['images']} faces, "
             f"{record['epochs']} epochs per process, medians of {record['rounds']} alternated "
             f"rounds on {record['cpu']} ({record['cores']} core(s); "
             f"`python -m benchmarks.backends`):", "",
             "| backend | training images/s | against TensorFlow | whole process |",
             "|---|---|---|---|"]
    for name, values in record["summary"].items():
        ratio = f"{values['images_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {values['images_per_s']:.1f} | {ratio} | "
                     f"{values['process_s']:.1f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
