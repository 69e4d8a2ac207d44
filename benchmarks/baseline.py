"""The reference slides' VAE (lecture 004), kept as written there: the speed baseline.

Plain float32 Keras, the slides' Sampling layer, encoder, decoder, VAE
subclass with its train_step and L1 loss, fed from memory by
`tf.data.Dataset.from_tensor_slices` on float32 images, as the slides do.
Only the syntax garbled by the slides' text extraction is repaired.
"""

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

import keras
import tensorflow as tf
from keras import layers, ops

INPUT_SHAPE = (128, 128, 3)
LATENT_DIM = 32


class Sampling(layers.Layer):
    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = tf.shape(z_mean)[0]
        dim = tf.shape(z_mean)[1]
        epsilon = tf.random.normal(shape=(batch, dim))
        return z_mean + tf.exp(0.5 * z_log_var) * epsilon


def build_encoder():
    encoder_inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2D(128, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dense(64, activation="relu")(x)
    z_mean = layers.Dense(LATENT_DIM, name="z_mean")(x)
    z_log_var = layers.Dense(LATENT_DIM, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    return keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")


def build_decoder():
    latent_inputs = keras.Input(shape=(LATENT_DIM,))
    x = layers.Dense(16 * 16 * 128, activation="relu")(latent_inputs)
    x = layers.Reshape((16, 16, 128))(x)
    x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid")(x)
    return keras.Model(latent_inputs, x, name="decoder")


class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(ops.sum(ops.abs(data - reconstruction), axis=(1, 2, 3)))
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {"loss": self.total_loss_tracker.result(),
                "reconstruction_loss": self.reconstruction_loss_tracker.result(),
                "kl_loss": self.kl_loss_tracker.result()}


def build_model():
    model = VAE(build_encoder(), build_decoder())
    model.compile(optimizer=keras.optimizers.Adam())
    return model


def make_dataset(images_uint8, batch_size):
    """The slides' input: the whole set as float32 in memory, sliced and batched."""
    images = images_uint8.astype("float32") / 255.0
    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size)


def main(argv=None):
    """Train the slides' model on a .npy of uint8 faces, as the slides do:
    `python -m benchmarks.baseline FACES.npy --epochs 3` (a whole process,
    timed from outside by benchmarks/training_speed.py)."""
    import argparse

    import numpy as np

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("images", help="a .npy of uint8 faces (N, 128, 128, 3)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    build_model().fit(make_dataset(np.load(args.images), args.batch_size), epochs=args.epochs,
                      verbose=2)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
