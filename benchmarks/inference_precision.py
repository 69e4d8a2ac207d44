#!/usr/bin/env python
"""Generating and reconstructing in the model's saved precision against `--precision auto`.

Loads the model twice, as `load_model()` (its saved dtype policy) and as
`load_model(precision="auto")` (what `cvae generate` and the other
exploring commands run: float32 where this machine only emulates the saved
policy), and times on each, in alternating rounds, `model.generate` of a
batch of faces and `model.reconstruct` of a batch of images. The first call
of each compiles and is not timed; each rate is the median of the rounds,
and the table gives the largest pixel difference between the two versions.

Writes the table into docs/speed.md between the "inference-precision" markers.

    python -m benchmarks.inference_precision
"""

import argparse
import statistics
import sys
import time

import numpy as np

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from cvae import precision
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.errors import run_script
from cvae.model.saving import default_model_path, load_model
from scripts.repository import REPOSITORY_ROOT, command_line, replace_between_markers


def tasks(model, batch_size):
    """(what, call) for each timed task; each call returns images in [0, 1]."""
    images = np.random.default_rng(0).integers(
        0, 256, (batch_size, *model.config.image_shape), dtype=np.uint8)
    return [(f"generate {batch_size} faces", lambda: model.generate(batch_size, seed=0)),
            (f"reconstruct {batch_size} images", lambda: model.reconstruct(images))]


def images_per_second(call, batch_size):
    started = time.perf_counter()
    call()
    return batch_size / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", help="a .keras model (default: the shipped model)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per call")
    parser.add_argument("--rounds", type=positive_int, default=5, help="timed calls per version")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/speed.md"),
                        help="the document whose \"inference-precision\" section is rewritten")
    args = parser.parse_args(argv)

    path = args.model or default_model_path()
    versions = {"saved": load_model(path), "auto": load_model(path, precision="auto")}
    policies = {name: model.dtype_policy.name for name, model in versions.items()}
    print(f"saved: {policies['saved']}; auto: {policies['auto']}", flush=True)
    work = {name: tasks(model, args.batch_size) for name, model in versions.items()}
    outputs = {name: [call() for _, call in calls] for name, calls in work.items()}  # Compiles.
    rates = {name: [[] for _ in calls] for name, calls in work.items()}
    for round_index in range(args.rounds):
        for name, calls in work.items():
            for index, (_, call) in enumerate(calls):
                rates[name][index].append(images_per_second(call, args.batch_size))
        print(f"round {round_index + 1} of {args.rounds}", flush=True)
    rows = []
    for index, (what, _) in enumerate(work["saved"]):
        saved, auto = (statistics.median(rates[name][index]) for name in ("saved", "auto"))
        levels = 255 * np.abs(outputs["saved"][index] - outputs["auto"][index]).max()
        rows.append((what, saved, auto, float(levels)))
    section = inference_precision_section(rows, policies, args, argv)
    replace_between_markers(args.readme, "inference-precision", section)
    print(section)
    return 0


def inference_precision_section(rows, policies, args, argv):
    native = "has" if precision.cpu_has_bfloat16() else "lacks"
    lines = [f"| task (this CPU {native} native bfloat16) | saved ({policies['saved']}) "
             f"| auto ({policies['auto']}) | auto against saved | largest pixel difference |",
             "|---|---|---|---|---|",
             *[f"| {what} | {saved:.1f} images/s | {auto:.1f} images/s | {auto / saved:.2f}× "
               f"| {difference:.1f}/255 |" for what, saved, auto, difference in rows]]
    command = command_line("python -m benchmarks.inference_precision", argv)
    return "\n".join(lines + ["", f"Median of {args.rounds} calls per version after an "
                              f"untimed one, the two versions alternating. Reproduce: "
                              f"`{command}` (on an otherwise idle machine)."])


if __name__ == "__main__":
    sys.exit(run_script(main))
