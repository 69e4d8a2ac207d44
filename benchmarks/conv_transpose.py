#!/usr/bin/env python
"""Where bfloat16 falls short: forward + backward time of the decoder's layers.

For each Conv2DTranspose of the `seed` preset's decoder (batch 64), times it
against two ways of computing an upsampling convolution from Conv2D, in the
given precision. On the AMD EPYC CPU of this project's machines (AVX-512
BF16, no AMX), Conv2D gets its bfloat16 speed-up and Conv2DTranspose nearly
none, which is what holds the whole training step below 2x float32.

    python benchmarks/conv_transpose.py float32
    python benchmarks/conv_transpose.py mixed_bfloat16
"""

import sys
import time

import keras
import tensorflow as tf

SHAPES = ((128, 64, 16), (64, 32, 32), (32, 3, 64))  # (in channels, out channels, input side)


def forward_backward_ms(layer, inputs, repeats=10):
    layer(inputs)

    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(tf.cast(layer(inputs), tf.float32))
        return tape.gradient(loss, [inputs] + layer.trainable_weights)

    step(inputs)
    started = time.perf_counter()
    for _ in range(repeats):
        step(inputs)
    return (time.perf_counter() - started) / repeats * 1e3


def main(precision):
    keras.config.set_dtype_policy(precision)
    for channels_in, channels_out, side in SHAPES:
        inputs = tf.random.normal((64, side, side, channels_in))
        layers = {
            "Conv2DTranspose 3x3/2": keras.layers.Conv2DTranspose(channels_out, 3, strides=2,
                                                                  padding="same"),
            "Conv2D 3x3 to 4x channels (4x the MACs)": keras.layers.Conv2D(4 * channels_out, 3,
                                                                           padding="same"),
            "UpSampling2D + Conv2D 3x3": keras.Sequential([
                keras.layers.UpSampling2D(2), keras.layers.Conv2D(channels_out, 3, padding="same")]),
        }
        timings = ", ".join(f"{name} {forward_backward_ms(layer, inputs):.1f} ms"
                            for name, layer in layers.items())
        print(f"{precision} {channels_in}->{channels_out} at {side}x{side}: {timings}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "mixed_bfloat16")
