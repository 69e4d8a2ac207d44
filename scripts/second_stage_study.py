#!/usr/bin/env python
"""Compare second stages (`cvae.second_stage`) on one first stage's codes:
how many training codes, how wide, how long.

Each variant is trained on the same first stage's codes of training images,
and its default samples are scored as `scripts/results.py` scores the
shipped model's: SWD (x1e3, per pyramid level, finest first) of as many
samples as half the held-out images against the other half, and the
detector's face rate. Two references bound what a second stage can do with
this decoder: the decoded codes of other training faces (an exact sampler of
the training codes), and the raw N(0, I) prior.

Writes docs/results/second_stage_study.json and the table in
docs/model_study.md between the "second-stage" markers.

    python scripts/second_stage_study.py --model /tmp/first-stage.keras \\
        --data ../shared/faces/utkface/train --data runs/celeba-train-aligned.npy \\
        --val-data ../shared/faces/utkface/val
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cvae.quiet import load_tensorflow_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_tensorflow_quietly()

from cvae import data
from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter
from cvae.errors import CvaeError, run_script
from cvae.evaluation import samples_entry, split_halves
from repository import REPOSITORY_ROOT, replace_between_markers
from cvae.saving import load_model
from cvae.second_stage import DEFAULT_UNITS, fit_second_stage_on_codes

# (name, codes of each --data source (None: all), hidden widths, epochs)
VARIANTS = [
    ("5000 codes per source", 5000, DEFAULT_UNITS, 100),
    ("all codes", None, DEFAULT_UNITS, 100),
    ("all codes deeper", None, (1024, 1024, 1024), 100),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="the first stage (a .keras model)")
    parser.add_argument("--data", required=True, action="append",
                        help="training images (folder or .npy/.npz), repeatable")
    parser.add_argument("--val-data", required=True, help="held-out images (utkface/val)")
    parser.add_argument("--variants", help="comma-separated names of VARIANTS to run "
                                           "(default: all)")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for second_stage_study.json")
    args = parser.parse_args(argv)
    names = [variant[0] for variant in VARIANTS]
    chosen = args.variants.split(",") if args.variants else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise CvaeError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(names)}")

    model = load_model(args.model)
    size = model.config.image_size
    held_out, _ = data.read_dataset(args.val_data, size)
    reference, _ = split_halves(held_out.astype(np.float32) / 255.0)
    count = len(reference)
    codes = []
    for source in args.data:
        images, _ = data.read_dataset(source, size)
        print(f"encoding {len(images)} images of {source}", flush=True)
        codes.append(model.encode(images))

    def score(samples, **details):
        return {**details, **samples_entry(reference, samples, 0)}

    rows = []
    everything = np.concatenate([z_mean for z_mean, _ in codes])
    rows.append(score(model.decode(data.random_subset(everything, count, seed=1)),
                      name="reference: decoded codes of other training faces"))
    rows.append(score(model.generate(count, seed=0, sampler="prior"),
                      name="reference: the raw N(0, I) prior"))
    for name, per_source, units, epochs in VARIANTS:
        if name not in chosen:
            continue
        subsets = [tuple(_subset(part, per_source) for part in source_codes)
                   for source_codes in codes]
        z_mean = np.concatenate([z for z, _ in subsets])
        z_log_var = np.concatenate([v for _, v in subsets])
        print(f"{name}: {len(z_mean)} codes, units {units}, {epochs} epochs", flush=True)
        started = time.perf_counter()
        combined = fit_second_stage_on_codes(model, z_mean, z_log_var, units=units,
                                             epochs=epochs)
        seconds = time.perf_counter() - started
        rows.append(score(combined.generate(count, seed=0), name=name, codes=len(z_mean),
                          units=list(units), epochs=epochs, seconds=seconds))
        print(_row(rows[-1]), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "second_stage_study.json", json.dumps(rows, indent=2) + "\n")
    table = "\n".join([
        f"On `{args.val_data}`: {count} samples of each against half of the held-out "
        f"faces; first stage `{Path(args.model).name}`.",
        "",
        "| sampler | codes | hidden widths | epochs | training (min) | face rate | "
        "SWD ×10³, 128 / 64 / 32 / 16 px |",
        "|---|---|---|---|---|---|---|",
        *[_row(row) for row in rows],
        "",
        "Reproduce: `python scripts/second_stage_study.py --model FIRST_STAGE --data "
        "../shared/faces/utkface/train --data runs/celeba-train-aligned.npy --val-data "
        "../shared/faces/utkface/val`.",
    ])
    replace_between_markers(REPOSITORY_ROOT / "docs/model_study.md", "second-stage", table)
    print(table)
    return 0


def _subset(array, count):
    # The same rows of z_mean and z_log_var: random_subset's choice depends
    # only on the length, the count and the seed.
    return data.random_subset(array, count, seed=0)


def _row(row):
    levels = " / ".join(f"{value:.0f}" for value in row["swd_levels"])
    minutes = f"{row['seconds'] / 60:.1f}" if "seconds" in row else "-"
    units = ", ".join(map(str, row["units"])) if "units" in row else "-"
    return (f"| {row['name']} | {row.get('codes', '-')} | {units} | {row.get('epochs', '-')} | "
            f"{minutes} | {100 * row['face_rate']:.1f}% | {levels} |")


if __name__ == "__main__":
    sys.exit(run_script(main))
