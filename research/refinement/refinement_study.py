#!/usr/bin/env python
"""Refining codes with and without the texture term: how close the
reconstructions come (PSNR / SSIM) and how much fine detail they keep (the
SWD of the reconstructions, per pyramid level, as `cvae evaluate` scores it).

Plain refinement descends on -log p(x | z) - log p(z) and buys closeness
partly by thinning out the fine pyramid levels; the texture term
(`cvae.model.losses.band_energy_gap`, weighted by --texture-weights) holds each
level's energy at the image's. Scored on the share of --data that training
held out (`cvae train --validation-split`), so the test sets play no part
in choosing the weight. Prints the table, writes --out as JSON, and with
--doc rewrites the --marker section of that document.

    python research/refinement/refinement_study.py --data ../shared/faces/utkface/train \\
        --texture-weights 0,0.03,0.1 --doc research/model/notebook.md
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# The studies share the document-writing helpers of scripts/repository.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import replace_between_markers, reproduce_command

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, fraction, positive_int
from cvae.data import datasets
from cvae.errors import CvaeError, run_script
from cvae.evaluation.evaluate import reconstruction_entry
from cvae.model.refinement import SUGGESTED_STEPS
from cvae.model.saving import default_model_path, load_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True,
                        help="the training source whose held-out share is scored")
    parser.add_argument("--validation-split", type=fraction, default=0.05,
                        help="the share held out, as `cvae train --validation-split`")
    parser.add_argument("--model", default=None, help="a .keras model (default: the shipped one)")
    parser.add_argument("--steps", type=positive_int, default=SUGGESTED_STEPS,
                        help="refinement steps per face")
    parser.add_argument("--texture-weights", default="0,0.03,0.1", type=_weights,
                        help="comma-separated texture-term weights, one row each (0: plain "
                             "refinement)")
    parser.add_argument("--max-images", type=positive_int, default=None,
                        help="score only the first N held-out faces (a quicker look)")
    parser.add_argument("--out", default="docs/results/refinement_study.json",
                        help="where the rows are written as JSON")
    parser.add_argument("--doc", help="a document whose --marker section is rewritten")
    parser.add_argument("--marker", default="refinement-texture", help="the section's marker")
    args = parser.parse_args(argv)

    model_path = args.model or str(default_model_path())
    model = load_model(model_path)
    size, channels = model.config.image_size, model.config.channels
    _, held_out = datasets.read_dataset(args.data, size, channels,
                                        validation_fraction=args.validation_split)
    held_out = held_out[:args.max_images]
    if len(held_out) < 4:
        raise CvaeError(f"{args.data}: {len(held_out)} held-out faces; scoring needs 4")
    originals = held_out.astype(np.float32) / 255.0

    rows = [{"texture_weight": None, "seconds_per_face": 0.0,
             **reconstruction_entry(originals, model.reconstruct(held_out))}]
    for weight in args.texture_weights:
        started = time.monotonic()
        reconstructions = model.reconstruct(held_out, refine_steps=args.steps,
                                            texture_weight=weight)
        seconds = (time.monotonic() - started) / len(held_out)
        rows.append({"texture_weight": weight, "seconds_per_face": seconds,
                     **reconstruction_entry(originals, reconstructions)})
        print(f"texture weight {weight:g}: {rows[-1]['reconstruction']['psnr']:.2f} dB, "
              f"{seconds:.2f} s per face", file=sys.stderr, flush=True)
    result = {"model": model_path, "data": args.data, "validation_split": args.validation_split,
              "images": len(held_out), "steps": args.steps, "rows": rows}
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    table = _table(result, argv)
    if args.doc:
        replace_between_markers(args.doc, args.marker, table)
    print(table)
    return 0


def _weights(text):
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    if any(weight < 0 for weight in weights):
        raise argparse.ArgumentTypeError(f"weights must be >= 0, got {text!r}")
    return weights


def _table(result, argv):
    lines = [f"The {result['images']} faces of `{result['data']}` that training holds out "
             f"({result['validation_split']:g} of them); model `{Path(result['model']).name}`, "
             f"{result['steps']} refinement steps:",
             "",
             "| codes | PSNR / SSIM | reconstructions' SWD ×10³, 128 / 64 / 32 / 16 px | "
             "mean of the levels | seconds per face |",
             "|---|---|---|---|---|"]
    for row in result["rows"]:
        weight = row["texture_weight"]
        name = ("the encoder's" if weight is None else
                "refined, plain" if weight == 0 else f"refined, texture weight {weight:g}")
        quality, levels = row["reconstruction"], row["reconstruction_swd"]["swd_levels"]
        lines.append(f"| {name} | {quality['psnr']:.2f} / {quality['ssim']:.3f} | "
                     + " / ".join(f"{value:.0f}" for value in levels)
                     + f" | {row['reconstruction_swd']['swd']:.1f} | "
                     f"{row['seconds_per_face']:.2f} |")
    command = reproduce_command(__file__, argv)
    return "\n".join(lines + ["", f"Reproduce: `{command}`."])


if __name__ == "__main__":
    sys.exit(run_script(main))
