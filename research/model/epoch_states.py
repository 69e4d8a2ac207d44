#!/usr/bin/env python
"""Score a training run's epoch states on its own validation split, to choose
the one to publish without touching the test sets.

An adversarial run (or one with --ema-momentum) keeps each epoch's state in
epochs/ (`cvae export --checkpoint N` publishes one). Their reconstructions
of the faces that training held out from --data (the same hash-based share,
`cvae train --validation-split`) are scored as `cvae evaluate` scores them:
PSNR / SSIM, and the SWD (x1e3, per pyramid level, finest first) of the
reconstructions of one half against the other. `--also MODEL` scores other
models the same way (the run's starting model, say). Only reconstructions,
so a state takes about a minute, not the several of a full `cvae evaluate`.

Writes RUN_DIR/epoch_states.json, prints the table, and with --doc rewrites
the table between the --marker markers of that document.

    python research/model/epoch_states.py runs/faces-v2-adversarial-ema \\
        --data ../shared/faces/utkface/train --also saved_models/cvae-faces.keras
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
from cvae.cli.arguments import HelpFormatter, fraction, non_negative_int
from cvae.data import datasets
from cvae.errors import CvaeError, run_script
from cvae.evaluation.evaluate import reconstruction_entry
from cvae.model.saving import load_model
from cvae.training.runs import EPOCHS_DIR, read_run_record

RESULTS_FILE = "epoch_states.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
    parser.add_argument("--data", required=True,
                        help="the training source whose held-out share is scored (a folder "
                             "or array given to the run as --data)")
    parser.add_argument("--validation-split", type=fraction,
                        help="the share held out (default: the run's own, from its run.json)")
    parser.add_argument("--also", action="append", default=[], metavar="MODEL",
                        help="another .keras model to score the same way (repeatable)")
    parser.add_argument("--refine-steps", type=non_negative_int, default=0, metavar="N",
                        help="also score each state's reconstructions from codes refined N "
                             "steps against its decoder (docs/model.md, \"Refining codes\"): "
                             "how far its encoder falls short of its decoder")
    parser.add_argument("--doc", help="a document whose --marker section is rewritten")
    parser.add_argument("--marker", default="epoch-states", help="the section's marker name")
    args = parser.parse_args(argv)

    run_dir = Path(args.run_dir)
    record = read_run_record(run_dir)
    if record is None:
        raise CvaeError(f"{run_dir} is not a training run directory (it has no run.json)")
    states = sorted((run_dir / EPOCHS_DIR).glob("epoch_*.keras"))
    if not states and not args.also:
        raise CvaeError(f"{run_dir} keeps no epoch states ({EPOCHS_DIR}/) and no --also "
                        f"model was given")
    split = (args.validation_split if args.validation_split is not None
             else record["options"]["validation_fraction"])
    size, channels = record["config"]["image_size"], record["config"]["channels"]
    _, held_out = datasets.read_dataset(args.data, size, channels, validation_fraction=split)
    if len(held_out) < 4:
        raise CvaeError(f"--validation-split {split} holds out {len(held_out)} of the images "
                        f"in {args.data}; scoring needs 4")
    originals = held_out.astype(np.float32) / 255.0

    rows = []
    for path in [Path(model) for model in args.also] + states:
        started = time.monotonic()
        model = load_model(path)
        entry = reconstruction_entry(originals, model.reconstruct(held_out))
        rows.append({"model": str(path), **entry})
        if args.refine_steps:
            entry = reconstruction_entry(originals, model.reconstruct(
                held_out, refine_steps=args.refine_steps))
            rows.append({"model": str(path), "refine_steps": args.refine_steps, **entry})
        print(f"{path}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    result = {"run": str(run_dir), "data": args.data, "validation_split": split,
              "images": len(held_out), "rows": rows}
    write_text(run_dir / RESULTS_FILE, json.dumps(result, indent=2) + "\n")
    table = _table(result, argv)
    if args.doc:
        replace_between_markers(args.doc, args.marker, table)
    print(table)
    return 0


def _table(result, argv):
    lines = [f"The {result['images']} faces of `{result['data']}` that `{result['run']}` "
             f"held out ({result['validation_split']:g} of them):",
             "",
             "| state | PSNR / SSIM | reconstructions' SWD ×10³, 128 / 64 / 32 / 16 px | "
             "mean of the levels |",
             "|---|---|---|---|"]
    for row in result["rows"]:
        quality, levels = row["reconstruction"], row["reconstruction_swd"]["swd_levels"]
        refined = (f", codes refined {row['refine_steps']} steps" if row.get("refine_steps")
                   else "")
        lines.append(f"| `{row['model']}`{refined} | {quality['psnr']:.2f} / {quality['ssim']:.3f} | "
                     + " / ".join(f"{value:.0f}" for value in levels)
                     + f" | {row['reconstruction_swd']['swd']:.1f} |")
    command = reproduce_command(__file__, argv)
    return "\n".join(lines + ["", f"Reproduce: `{command}`."])


if __name__ == "__main__":
    sys.exit(run_script(main))
