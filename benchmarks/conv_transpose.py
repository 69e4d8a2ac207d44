#!/usr/bin/env python
"""Can Conv2D stand in for the decoder's Conv2DTranspose under bfloat16?

A 3×3, stride-2, "same" transposed convolution equals a 2×2 convolution of
the input (padded by one row and column in front) to 4× the channels,
followed by depth_to_space: each of the four output phases takes its own
taps of the same 3×3 kernel. `SubPixelConvTranspose` computes it that way
from the same kernel and bias, so it is the same layer with the same
weights, at 16/9 of the multiply-adds, but all in Conv2D, whose bias and
ReLU oneDNN fuses. For each Conv2DTranspose of the `seed` preset's decoder
(batch 64), this times a forward and backward pass of both, in float32 and
in mixed_bfloat16, and checks that they agree.

Writes the table into docs/speed.md between the "conv-transpose" markers.

    python -m benchmarks.conv_transpose
"""

import argparse
import sys
import time

import numpy as np

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.errors import run_script
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

BATCH = 64
SHAPES = ((128, 64, 16, "relu"), (64, 32, 32, "relu"), (32, 3, 64, None))  # in, out, side, act
PRECISIONS = ("float32", "mixed_bfloat16")
# For out = 2m + phase: out[2m] = x[m]·w[0] + x[m-1]·w[2] and out[2m+1] = x[m]·w[1].
# Keys are (phase, tap), tap 0 reading x[m-1] and tap 1 reading x[m]; values index w.
KERNEL_INDEX = {(0, 0): 2, (0, 1): 0, (1, 1): 1}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--repeats", type=positive_int, default=15, help="timed passes per layer")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/speed.md"),
                        help="the document whose \"conv-transpose\" section is rewritten")
    args = parser.parse_args(argv)

    rows = []
    for channels_in, channels_out, side, activation in SHAPES:
        timings = {}
        for precision in PRECISIONS:
            native, rewritten = _layer_pair(channels_out, activation, precision)
            inputs = np.random.default_rng(0).random((BATCH, side, side, channels_in), "float32")
            _check_equal(native, rewritten, inputs)
            timings[precision] = (_forward_backward_ms(native, inputs, args.repeats),
                                  _forward_backward_ms(rewritten, inputs, args.repeats))
        rows.append((f"{channels_in}→{channels_out} at {side}×{side}", timings))
        print(rows[-1], flush=True)
    section = conv_transpose_section(rows)
    replace_between_markers(args.readme, "conv-transpose", section)
    print(section)
    return 0


def sub_pixel_layer_class():
    import keras
    import tensorflow as tf
    from keras import ops

    class SubPixelConvTranspose(keras.layers.Layer):
        """Conv2DTranspose(filters, 3, strides=2, padding="same") computed by Conv2D."""

        def __init__(self, filters, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.activation = filters, keras.activations.get(activation)
            taps = np.zeros((2, 2, 4, 3, 3), "float32")  # tap y, tap x, phase, ky, kx
            for (phase_y, tap_y), ky in KERNEL_INDEX.items():
                for (phase_x, tap_x), kx in KERNEL_INDEX.items():
                    taps[tap_y, tap_x, 2 * phase_y + phase_x, ky, kx] = 1
            self.taps = taps

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(3, 3, self.filters, input_shape[-1]),
                                          initializer="glorot_uniform", name="kernel")
            self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

        def call(self, inputs):
            kernel = ops.einsum("yxpuv,uvoi->yxipo", ops.cast(self.taps, self.compute_dtype),
                                ops.cast(self.kernel, self.compute_dtype))
            kernel = ops.reshape(kernel, (2, 2, kernel.shape[2], 4 * self.filters))
            padded = ops.pad(inputs, ((0, 0), (1, 0), (1, 0), (0, 0)))
            phases = ops.conv(padded, kernel, padding="valid")
            phases = self.activation(phases + ops.tile(ops.cast(self.bias, self.compute_dtype), [4]))
            return tf.nn.depth_to_space(phases, 2)  # keras.ops has no depth_to_space.

    return SubPixelConvTranspose


def _layer_pair(filters, activation, precision):
    import keras

    native = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same",
                                          activation=activation, dtype=precision)
    rewritten = sub_pixel_layer_class()(filters, activation=activation, dtype=precision)
    return native, rewritten


def _check_equal(native, rewritten, inputs):
    native(inputs), rewritten(inputs)
    rewritten.kernel.assign(native.kernel)
    rewritten.bias.assign(np.linspace(-0.5, 0.5, native.bias.shape[0]))
    native.bias.assign(rewritten.bias)
    gap = float(np.max(np.abs(np.asarray(native(inputs), "float32")
                              - np.asarray(rewritten(inputs), "float32"))))
    tolerance = 1e-4 if native.compute_dtype == "float32" else 0.1
    if gap > tolerance:
        raise AssertionError(f"the sub-pixel layer differs from Conv2DTranspose by {gap}")


def _forward_backward_ms(layer, inputs, repeats):
    import tensorflow as tf

    inputs = tf.constant(inputs)

    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(tf.square(tf.cast(layer(inputs), tf.float32)))
        # Returning the loss keeps the forward pass from being pruned away.
        return loss, tape.gradient(loss, [inputs] + layer.trainable_weights)

    step(inputs), step(inputs)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step(inputs)
        times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def conv_transpose_section(rows):
    lines = ["| decoder layer (batch 64) | Conv2DTranspose, float32 | Conv2DTranspose, bfloat16 "
             "| sub-pixel Conv2D, float32 | sub-pixel Conv2D, bfloat16 |", "|---|---|---|---|---|"]
    for name, timings in rows:
        (native_32, sub_32), (native_16, sub_16) = (timings[p] for p in PRECISIONS)
        lines.append(f"| {name} | {native_32:.1f} ms | {native_16:.1f} ms "
                     f"({native_32 / native_16:.2f}×) | {sub_32:.1f} ms | {sub_16:.1f} ms |")
    return "\n".join(lines + [
        "", "Forward and backward pass, median of repeated passes. Reproduce: "
        "`python -m benchmarks.conv_transpose` (about a minute, on an otherwise idle machine)."])


if __name__ == "__main__":
    sys.exit(run_script(main))
