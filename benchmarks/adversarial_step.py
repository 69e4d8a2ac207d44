#!/usr/bin/env python
"""What the adversarial term costs per training step, before and after its start step.

Times `VAE.train_on_batch` on one batch of random images, in the machine's
default precision (`--precision auto`), for a preset (`faces-v2` by default)
in five configurations: without the term; with it from step 0 (how the
shipped model was fine-tuned); with it after a start step has passed;
before its start step, where the step is the likelihood's alone and the
discriminator is not run; and from step 0 with a two-scale discriminator
(`--discriminator-scales 2`). The first calls compile and are not timed;
the figure is the median of the timed steps.

Writes the table into docs/speed.md between the "adversarial-step" markers.

    python -m benchmarks.adversarial_step
"""

import argparse
import statistics
import sys
import time

import numpy as np

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.errors import run_script
from cvae.model.config import PRESETS, get_preset
from cvae.precision import resolve_precision
from scripts.repository import REPOSITORY_ROOT, command_line, replace_between_markers

WARM_UP_STEPS = 2
# Far beyond any timed step: the term never starts.
NEVER = 10**9


def configurations(config):
    """(what, config) for each timed case; the term's weight is the shipped fine-tune's."""
    with_term = config.replace(adversarial_weight=1.0)
    return [("likelihood only (no term)", config.replace(adversarial_weight=0.0)),
            ("with the term from step 0", with_term.replace(adversarial_start_step=0)),
            ("with the term, after its start step",
             with_term.replace(adversarial_start_step=WARM_UP_STEPS)),
            ("before the term's start step", with_term.replace(adversarial_start_step=NEVER)),
            ("with the term from step 0, two-scale discriminator",
             with_term.replace(adversarial_start_step=0, discriminator_scales=2))]


def step_milliseconds(config, precision, batch_size, steps):
    """Median milliseconds of `steps` timed training steps, after the warm-up."""
    import keras

    from cvae.model.vae import VAE

    model = VAE(config, seed=0, dtype=precision)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    images = np.random.default_rng(0).integers(
        0, 256, (batch_size, *config.image_shape), dtype=np.uint8)
    times = []
    for step in range(WARM_UP_STEPS + steps):
        started = time.perf_counter()
        model.train_on_batch(images)
        if step >= WARM_UP_STEPS:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--preset", default="faces-v2", choices=sorted(PRESETS))
    parser.add_argument("--image-size", type=positive_int,
                        help="override the preset's image size (small for a quick check)")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="images per step (the shipped model's runs used 32)")
    parser.add_argument("--steps", type=positive_int, default=8, help="timed steps per case")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/speed.md"),
                        help="the document whose \"adversarial-step\" section is rewritten")
    args = parser.parse_args(argv)

    config = get_preset(args.preset)
    if args.image_size:
        config = config.replace(image_size=args.image_size)
    precision = resolve_precision("auto")
    rows = []
    for what, case in configurations(config):
        rows.append((what, step_milliseconds(case, precision, args.batch_size, args.steps)))
        print(f"{what}: {rows[-1][1]:.0f} ms", flush=True)
    section = adversarial_step_section(rows, args, precision, argv)
    replace_between_markers(args.readme, "adversarial-step", section)
    print(section)
    return 0


def adversarial_step_section(rows, args, precision, argv):
    baseline = rows[0][1]
    lines = [f"| `{args.preset}` training step (batch {args.batch_size}, {precision}) "
             "| ms per step | against no term |",
             "|---|---|---|",
             *[f"| {what} | {ms:.0f} | {ms / baseline:.2f}× |" for what, ms in rows]]
    command = command_line("python -m benchmarks.adversarial_step", argv)
    return "\n".join(lines + ["", f"Median of {args.steps} steps after {WARM_UP_STEPS} "
                              f"untimed ones, each case in a fresh model. Reproduce: "
                              f"`{command}` (on an otherwise idle machine)."])


if __name__ == "__main__":
    sys.exit(run_script(main))
