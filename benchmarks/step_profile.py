#!/usr/bin/env python
"""Where bfloat16 gains and where it does not, inside one training step.

Traces a few training steps of a preset (`seed` by default) through cvae with the
TensorFlow profiler, once in float32 and once in mixed_bfloat16, and adds up
the time the ops of each kind of layer took, forward and backward together.
Ops run one at a time, each on every core, so that what one costs does not
depend on what else ran beside it; their times add up to about a step's.

Writes the tables into docs/speed.md between the "step-profile-PRESET" markers.

    python -m benchmarks.step_profile
    python -m benchmarks.step_profile --preset faces --steps 4
"""

import argparse
import collections
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets
from cvae.errors import run_script
from cvae.model.config import PRESETS, get_preset
from cvae.model.vae import VAE
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

BATCH = 64  # What the docs' tables were traced at.
PRECISIONS = ("float32", "mixed_bfloat16")
# The part of an op's name that says which network and layer it belongs to;
# Keras numbers repeated names ("conv2d_transpose_1_2"), which is dropped.
LAYER_IN_OP_NAME = re.compile(
    r"(encoder|decoder)_\d+/([a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*)(?:_\d+)*/")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=10,
                        help="training steps traced per precision")
    parser.add_argument("--batch-size", type=positive_int, default=BATCH,
                        help="images per training step")
    parser.add_argument("--preset", default="seed", choices=sorted(PRESETS),
                        help="the network to profile")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/speed.md"),
                        help="the document whose \"step-profile-PRESET\" section is rewritten")
    args = parser.parse_args(argv)

    import tensorflow as tf

    # One op at a time, each on every core: ops that overlap slow each other
    # by varying amounts, which would blur what each one costs.
    tf.config.threading.set_inter_op_parallelism_threads(1)
    count = args.batch_size * (args.steps + 2)
    images = np.random.default_rng(0).integers(0, 256, (count, 128, 128, 3), dtype=np.uint8)
    op_times = {precision: _traced_op_times(args.preset, precision, images, args.steps,
                                            args.batch_size)
                for precision in PRECISIONS}
    section = profile_section(op_times, args.preset, args.steps, args.batch_size)
    replace_between_markers(args.readme, f"step-profile-{args.preset}", section)
    print(section)
    return 0


def _traced_op_times(preset, precision, images, steps, batch_size):
    """{(group, op type): milliseconds per step} over `steps` traced steps."""
    import keras
    import tensorflow as tf

    model = VAE(get_preset(preset), seed=0, dtype=precision)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    dataset = datasets.make_dataset(images, batch_size, shuffle=True, flip=True, seed=0)
    # The dataset shuffles itself; this epoch traces and warms up outside the profile.
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    with tempfile.TemporaryDirectory() as trace_folder:
        tf.profiler.experimental.start(trace_folder)
        model.fit(dataset.take(steps), epochs=1, verbose=0, shuffle=False)
        tf.profiler.experimental.stop()
        trace_file = next(Path(trace_folder).rglob("*.xplane.pb"))
        return _op_times(trace_file.read_bytes(), steps)


def _op_times(trace, steps):
    try:
        from tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    space.ParseFromString(trace)
    totals = collections.Counter()
    for plane in space.planes:
        op_names = {key: metadata.name for key, metadata in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = op_names.get(event.metadata_id, "")
                if name.startswith("ExecutorState"):  # The executor's own span around ops.
                    continue
                totals[(_group(name), name.rsplit(":", 1)[-1])] += event.duration_ps / 1e9 / steps
    return totals


def _group(op_name):
    layer = LAYER_IN_OP_NAME.search(op_name)
    if layer:
        return f"{layer.group(1)} {layer.group(2)}"
    return "loss gradient" if "gradient_tape" in op_name else "loss, metrics and optimizer"


def profile_section(op_times, preset, steps, batch_size):
    single, half = (op_times[precision] for precision in PRECISIONS)

    def summed(times, key_index, keep=lambda key: True):
        totals = collections.Counter()
        for key, milliseconds in times.items():
            if keep(key):
                totals[key[key_index]] += milliseconds
        return totals

    def table(heading, key_index, rows, keep=lambda key: True):
        float32, bfloat16 = summed(single, key_index, keep), summed(half, key_index, keep)
        names = [name for name in sorted(float32, key=lambda name: -float32[name])[:rows]
                 if bfloat16[name]]
        lines = [f"| {heading} | float32 ms | bfloat16 ms | speed-up |", "|---|---|---|---|"]
        lines += [f"| {name} | {float32[name]:.1f} | {bfloat16[name]:.1f} | "
                  f"{float32[name] / bfloat16[name]:.2f}× |" for name in names]
        total_32, total_16 = sum(float32.values()), sum(bfloat16.values())
        lines.append(f"| **all** | {total_32:.1f} | {total_16:.1f} | {total_32 / total_16:.2f}× |")
        return lines

    transposed = "decoder conv2d_transpose"
    return "\n".join([
        f"Op time per training step of the `{preset}` preset (batch {batch_size}, {steps} traced "
        "steps, one op at a time), forward and backward together, by kind of layer:",
        "", *table("layers", 0, 8), "",
        "Inside the decoder's Conv2DTranspose layers, by op:",
        "", *table("op", 1, 8, keep=lambda key: key[0] == transposed), "",
        f"Reproduce: `python -m benchmarks.step_profile --preset {preset} --steps {steps}"
        f"{'' if batch_size == BATCH else f' --batch-size {batch_size}'}` "
        "(a minute or two, on an otherwise idle machine).",
    ])


if __name__ == "__main__":
    sys.exit(run_script(main))
