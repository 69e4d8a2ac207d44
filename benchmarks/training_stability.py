#!/usr/bin/env python
"""Does training from scratch stay stable whatever the seed?

Runs `cvae train` (the default preset and options) from scratch for a few
epochs once per seed on the same faces, and reads each run's history: the
first epoch's mean KL (a blow-up shows as millions of nats), and the
validation KL after each epoch (a posterior that collapsed carries under
1 nat per face). Writes benchmarks/training_stability.json and the table in
docs/training.md between the "training-stability" markers.

    python -m benchmarks.training_stability --data ../shared/faces/utkface/train
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.errors import CvaeError, run_script
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

# An epoch-1 mean KL above this many nats per face is a blow-up (healthy
# runs stay in the hundreds); a validation KL under 1 nat is a collapse.
BLOW_UP_NATS = 1e5
COLLAPSE_NATS = 1.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="a folder of face images")
    parser.add_argument("--images", type=positive_int, default=2000,
                        help="train on the first this many images of the folder (by name)")
    parser.add_argument("--seeds", type=positive_int, default=5, help="runs, seeds 0, 1, ...")
    parser.add_argument("--epochs", type=positive_int, default=2, help="epochs per run")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/training_stability.json"))
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "docs/training.md"),
                        help="the document whose marked table is rewritten ('' for none)")
    parser.add_argument("--marker", default="training-stability",
                        help="the name of the document's marked section")
    parser.add_argument("train_options", nargs=argparse.REMAINDER,
                        help="more `cvae train` options after --, e.g. -- --warmup-steps 0")
    args = parser.parse_args(argv)
    extra = [option for option in args.train_options if option != "--"]
    source = Path(args.data)
    if not source.is_dir():
        raise CvaeError(f"no such folder: {source}")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < args.images:
        raise CvaeError(f"{source} holds {len(files)} images, fewer than --images {args.images}")

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        faces = Path(scratch) / "faces"
        faces.mkdir()
        for path in files[:args.images]:
            (faces / path.name).symlink_to(path.resolve())
        for seed in range(args.seeds):
            out = Path(scratch) / f"run-{seed}"
            command = [sys.executable, "-m", "cvae.cli", "train", "--data", str(faces),
                       "--epochs", str(args.epochs), "--seed", str(seed), "--out", str(out),
                       "--no-tensorboard", *extra]
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True,
                                    env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
            if result.returncode != 0:
                raise CvaeError(f"seed {seed}: cvae train failed: "
                                f"{result.stderr.strip().splitlines()[-1:]}")
            with open(out / "history.csv", newline="") as handle:
                history = list(csv.DictReader(handle))
            row = {"seed": seed, "seconds": round(time.perf_counter() - started, 1),
                   "kl_epoch_1": float(history[0]["kl_loss"]),
                   "val_kl": [float(epoch["val_kl_loss"]) for epoch in history],
                   "val_loss": [float(epoch["val_loss"]) for epoch in history]}
            row["blew_up"] = row["kl_epoch_1"] > BLOW_UP_NATS
            row["collapsed"] = row["val_kl"][-1] < COLLAPSE_NATS
            rows.append(row)
            print(json.dumps(row), flush=True)

    result = {"command": "python -m benchmarks.training_stability " + " ".join(argv or sys.argv[1:]),
              "images": args.images, "epochs": args.epochs, "train_options": extra, "rows": rows}
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    table = _table(result)
    print(table)
    if args.doc:
        replace_between_markers(Path(args.doc), args.marker, table)
    return 0


def _table(result):
    epochs = result["epochs"]
    lines = [f"`cvae train` from scratch on the first {result['images']:,} UTKFace training "
             f"faces, {epochs} epochs, once per seed"
             + (f", with {' '.join(result['train_options'])}" if result["train_options"] else "")
             + " (`" + result["command"] + "`):", "",
             "| seed | epoch-1 mean KL (nats) | validation KL by epoch | validation loss by epoch "
             "| blew up | collapsed |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['seed']} | {row['kl_epoch_1']:,.1f} | "
                     + " / ".join(f"{v:,.1f}" for v in row["val_kl"]) + " | "
                     + " / ".join(f"{v:,.0f}" for v in row["val_loss"]) + " | "
                     + ("yes" if row["blew_up"] else "no") + " | "
                     + ("yes" if row["collapsed"] else "no") + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
