#!/usr/bin/env python
"""Train a VAE with plain Keras, the way a script uses the package: build the
model from a preset, compile it, and `fit` it on the project's `tf.data`
pipeline with two of its callbacks. (`cvae train` adds resuming, time limits,
figures and logs around the same `fit`.)

    python scripts/train.py --data ../shared/faces/utkface/train --epochs 5 --out runs/script
"""

import argparse
import sys
from pathlib import Path

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

import keras

from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets
from cvae.errors import run_script
from cvae.figures import image_grid, save_image
from cvae.model.config import DEFAULT_PRESET, PRESETS, get_preset
from cvae.model.vae import VAE
from cvae.training.schedules import default_optimizer
from cvae.training.trainer import AtomicBestCheckpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="folder (or .npy/.npz) of face images")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                        help="the network and objective")
    parser.add_argument("--epochs", type=positive_int, default=5, help="passes over the data")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per step")
    parser.add_argument("--out", default="runs/script", help="folder for the model and samples")
    args = parser.parse_args(argv)

    config = get_preset(args.preset)
    # 5 % of the files, chosen by a hash of their names, are held out.
    train_images, validation_images = datasets.read_dataset(
        args.data, config.image_size, config.channels, validation_fraction=0.05, progress=True)
    model = VAE(config, seed=0)
    model.compile(optimizer=default_optimizer())  # Adam after a learning-rate warm-up
    out = Path(args.out)
    model.fit(datasets.make_dataset(train_images, args.batch_size, shuffle=True, flip=True, seed=0),
              validation_data=datasets.make_dataset(validation_images, args.batch_size,
                                                    shuffle=False),
              epochs=args.epochs, shuffle=False,  # The dataset shuffles itself.
              callbacks=[keras.callbacks.TerminateOnNaN(),
                         AtomicBestCheckpoint(out / "model.keras", monitor="val_loss")])
    save_image(image_grid([model.generate(8, seed=0)]), out / "samples.png")
    print(f"wrote {out / 'model.keras'} and {out / 'samples.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
