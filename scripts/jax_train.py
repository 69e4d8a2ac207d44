#!/usr/bin/env python
"""Train the model on a GPU machine that has JAX but no TensorFlow.

Three steps and a report, each a subcommand:

    # here: the training faces as one small file (WebP, about 1.5 kB a face),
    # and, to fine-tune rather than start afresh, a trained first stage's
    # weights (float16, about half of float32's size)
    python scripts/jax_train.py pack --data ../shared/faces/utkface/train \
        --data runs/celeba-train-aligned.npy -o runs/jax-pack/faces.npz
    python scripts/jax_train.py weights saved_models/cvae-faces.keras \
        -o runs/jax-pack/initial
    # there (KERAS_BACKEND=jax): a likelihood phase, an adversarial one, and
    # the second stage on the codes of every face in the pack
    python scripts/jax_train.py train runs/jax-pack/faces.npz --out OUT \
        --initial-weights runs/jax-pack/initial --likelihood-minutes 6 \
        --adversarial-minutes 2
    # here: the weights back into a .keras model with its LiteRT files, and
    # the run's speed into docs/speed.md
    python scripts/jax_train.py assemble OUT -o saved_models/cvae-faces.keras
    python scripts/jax_train.py report OUT

The pack holds the same training and validation split as `cvae train
--validation-split 0.05`. WebP at quality 75 is 37.3 dB from the
(JPEG) originals, far above any reconstruction's error, and keeps 30,000
faces within what such a machine is sent. The weights come back in parts
of at most 14 MB (`cvae.saving.save_weights_in_parts`): the first stage's
in one folder per phase, the second stage's decoder in second_stage/. The
training itself is `cvae.jax_training`; the second stage is
`cvae.second_stage.fit_second_stage`, as in `cvae second-stage`.
"""

import argparse
import functools
import io
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cvae.errors import CvaeError, run_script

PACK_QUALITY = 75
DEFAULT_PRESET = "faces-v2"
RECORD_FILE = "record.json"
# Beside the weight parts that `weights` writes: the configuration they fit.
CONFIG_FILE = "config.json"
SECOND_STAGE_FOLDER = "second_stage"
# Below this many nats per face the codes carry next to nothing: a trained
# faces-v2 model's KL is about 520, and the collapsed run at batch 128 and
# 1e-3 ended its first epoch at 0.11.
COLLAPSED_KL = 1.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="the training faces as one WebP pack (here)")
    pack.add_argument("--data", action="append", required=True,
                      help="a folder of faces or a .npy array; repeatable")
    pack.add_argument("--validation-split", type=float, default=0.05,
                      help="the share of each source held out, by a hash of its file names "
                           "(as `cvae train --validation-split`)")
    pack.add_argument("--image-size", type=int, default=128, help="the faces' side in pixels")
    pack.add_argument("--quality", type=int, default=PACK_QUALITY,
                      help="WebP quality, 1 to 100: lower makes a smaller pack, further "
                           "from the originals (it prints how far)")
    pack.add_argument("-o", "--output", required=True, help="the .npz pack to write")
    weights = commands.add_parser("weights", help="a trained model's first stage as weight "
                                                  "parts to start `train` from (here)")
    weights.add_argument("model", help="a .keras model (its first stage is kept: encoder, "
                                       "decoder, decoder scale)")
    weights.add_argument("-o", "--output", required=True,
                         help="folder for the parts and the configuration they fit")
    weights.add_argument("--float32", action="store_true",
                         help="keep float32 (default float16: half the size, rounded "
                              "below what bfloat16 training computes in)")
    train = commands.add_parser("train", help="train on the pack (KERAS_BACKEND=jax)")
    train.add_argument("pack", help="the .npz written by `pack`")
    train.add_argument("--out", required=True, help="folder for the record and the weights")
    train.add_argument("--preset", default=None,
                       help=f"the configuration to start from (default {DEFAULT_PRESET}; with "
                            "--initial-weights, theirs)")
    train.add_argument("--initial-weights", default=None, metavar="FOLDER",
                       help="start from a trained first stage (a folder `weights` wrote) "
                            "instead of fresh weights: no KL warm-up, and a lower "
                            "--learning-rate suits (docs/training.md)")
    train.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                       help="a configuration field over the preset's, its value in JSON "
                            "(repeatable), e.g. --set 'filters=[64, 128, 256]'")
    train.add_argument("--likelihood-minutes", type=float, default=5.0,
                       help="wall time of the phase without the adversarial term, compiling "
                            "included (0 skips it)")
    train.add_argument("--adversarial-minutes", type=float, default=2.0,
                       help="wall time of the phase with it, after the first (0 skips it)")
    train.add_argument("--batch-size", type=int, default=128, help="faces per step")
    # At batch 128, 1e-3 (the CPU runs' rate at batch 32) blew the KL up
    # near the end of the warm-up and the posterior collapsed; 5e-4 trained
    # (docs/training.md, "On a GPU machine with JAX").
    train.add_argument("--learning-rate", type=float, default=5e-4,
                       help="the first phase's peak Adam rate (a cosine to zero over the phase)")
    train.add_argument("--adversarial-learning-rate", type=float, default=1e-4,
                       help="the second phase's peak rate")
    train.add_argument("--adversarial-weight", type=float, default=1.0,
                       help="the adversarial term's weight in the second phase")
    train.add_argument("--discriminator-scales", type=int, default=2,
                       help="PatchGANs, on the image and on each halving of it")
    train.add_argument("--kl-warmup-steps", type=int, default=1000,
                       help="steps over which the first phase ramps the KL weight up to beta "
                            "(none from --initial-weights)")
    # No float16: these steps scale no loss, and bfloat16 needs none.
    train.add_argument("--precision", default="mixed_bfloat16",
                       choices=("mixed_bfloat16", "float32"))
    train.add_argument("--checkpoint-minutes", type=float, default=2.0,
                       help="how often the weights are written during a phase")
    train.add_argument("--seed", type=int, default=0, help="for weights, batches and flips")
    train.add_argument("--second-stage-epochs", type=int, default=100,
                       help="then train the second stage on the codes of every face in the "
                            "pack, as `cvae second-stage` does (0: leave it to that command)")
    train.add_argument("--keep-likelihood-weights", action="store_true",
                       help="keep the likelihood phase's weights after the second stage is "
                            "written (all three sets are more than a GPU machine may send "
                            "back, 64 MB)")
    train.add_argument("--limit", type=int, default=None,
                       help="use only the first N training faces (a smoke test)")
    assemble = commands.add_parser("assemble", help="the weights into a .keras model (here)")
    assemble.add_argument("run", help="the folder `train` wrote")
    assemble.add_argument("--phase", default="adversarial", choices=("likelihood", "adversarial"),
                          help="whose weights: the end of which phase")
    assemble.add_argument("-o", "--output", required=True, help="the .keras file to write")
    assemble.add_argument("--force", action="store_true", help="replace an existing output")
    report = commands.add_parser("report", help="the run's speed and validation figures "
                                                "into docs/speed.md (here)")
    report.add_argument("run", help="the folder `train` wrote")
    report.add_argument("--doc", default="docs/speed.md",
                        help="the document whose gpu-training section is rewritten")
    options = parser.parse_args(argv)
    {"pack": run_pack, "weights": run_weights, "train": run_train, "assemble": run_assemble,
     "report": run_report}[options.command](options)


# --- pack (here) --------------------------------------------------------------

def run_pack(options):
    from cvae import data, metrics
    from cvae.atomic import atomic_path

    if not 1 <= options.quality <= 100:
        raise CvaeError(f"--quality must be 1 to 100, got {options.quality}")
    parts = {"train": [], "validation": []}
    for source in options.data:
        train, validation = data.read_dataset(source, options.image_size, 3,
                                              validation_fraction=options.validation_split,
                                              progress=True)
        parts["train"].append(train)
        parts["validation"].append(validation)
    arrays = {}
    for name, images in parts.items():
        images = np.concatenate(images)
        # A face at a time: the whole set in float64 at once took 20 GB.
        encoded, distances = [], []
        for image in images:
            encoded.append(_webp(image, options.quality))
            distances.append(metrics.psnr(image[None] / 255.0,
                                          _decoded(encoded[-1])[None] / 255.0)[0])
        arrays[f"{name}_bytes"] = np.frombuffer(b"".join(encoded), np.uint8)
        arrays[f"{name}_offsets"] = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
        print(f"{name}: {len(images)} faces, {np.mean([len(e) for e in encoded]):.0f} bytes "
              f"each, {np.mean(distances):.1f} dB PSNR from the originals")
    with atomic_path(options.output) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)
    print(f"wrote {options.output} ({os.path.getsize(options.output) / 1e6:.1f} MB)")


def _webp(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "WEBP", quality=quality)
    return buffer.getvalue()


def read_pack(path, part, limit=None, processes=None):
    """The pack's `part` ("train" or "validation") as uint8 (N, 128, 128, 3),
    decoded by `processes` processes (default: one per core; 1: in this one)."""
    with np.load(path) as pack:
        payload, offsets = pack[f"{part}_bytes"], pack[f"{part}_offsets"]
    count = len(offsets) - 1 if limit is None else min(limit, len(offsets) - 1)
    pieces = [payload[offsets[i]:offsets[i + 1]].tobytes() for i in range(count)]
    if processes == 1:
        return np.stack([_decoded(piece) for piece in pieces])
    with ProcessPoolExecutor(processes) as pool:
        return np.stack(list(pool.map(_decoded, pieces, chunksize=256)))


def _decoded(piece):
    return np.asarray(Image.open(io.BytesIO(piece)).convert("RGB"))


# --- weights (here) ------------------------------------------------------------

def run_weights(options):
    from cvae.saving import load_model, save_weights_in_parts

    model = load_model(options.model)
    # The first stage's configuration: the second stage is trained anew there.
    config = model.config.replace(second_stage_units=(), second_stage_noise=0.0)
    out = Path(options.output)
    save_weights_in_parts(model.first_stage_variables, out,
                          dtype=None if options.float32 else "float16")
    _write_json(out / CONFIG_FILE, {"config": config.to_dict(), "model": options.model})
    size = sum(path.stat().st_size for path in out.iterdir())
    print(f"wrote {out}: the first stage of {options.model} ({size / 1e6:.1f} MB)")


def _initial_config(folder):
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise CvaeError(f"{folder}: no {CONFIG_FILE}; write the folder with "
                        f"`jax_train.py weights MODEL -o {folder}`")
    return json.loads((folder / CONFIG_FILE).read_text())["config"]


# --- train (there) --------------------------------------------------------------

def run_train(options):
    # The faces are decoded by a process pool before JAX starts its threads:
    # forking a process that runs JAX can deadlock.
    overrides = _settings(options.set)
    if options.initial_weights and options.preset:
        raise CvaeError("--preset and --initial-weights: the configuration comes with the "
                        "weights")
    initial = _initial_config(options.initial_weights) if options.initial_weights else None
    if not Path(options.pack).is_file():
        raise CvaeError(f"{options.pack}: no such pack (write one with `jax_train.py pack`)")
    begin = time.perf_counter()
    train_images = read_pack(options.pack, "train", options.limit)
    validation_images = read_pack(options.pack, "validation", options.limit)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from cvae import jax_training
    from cvae.config import VAEConfig, get_preset
    from cvae.model import VAE
    from cvae.saving import load_weights_in_parts, save_weights_in_parts

    if keras.backend.backend() != "jax":
        raise CvaeError("train needs KERAS_BACKEND=jax")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"decoded {len(train_images)} training and {len(validation_images)} validation "
          f"faces in {time.perf_counter() - begin:.1f} s; devices: {jax_devices()}", flush=True)

    # A trained model's KL needs no warm-up, as `cvae train --initial-model`.
    settings = {**(initial or get_preset(options.preset or DEFAULT_PRESET).to_dict()), **overrides,
                "kl_warmup_steps": 0 if initial else options.kl_warmup_steps,
                "adversarial_weight": options.adversarial_weight, "adversarial_start_step": 0,
                "discriminator_scales": options.discriminator_scales}
    config = VAEConfig.from_dict(settings)
    if config.image_size != train_images.shape[1]:
        raise CvaeError(f"the pack's faces are {train_images.shape[1]} px, the model's "
                        f"{config.image_size} px")
    keras.utils.set_random_seed(options.seed)
    model = VAE(config, seed=options.seed, dtype=options.precision)
    record = {"config": config.to_dict(), "precision": options.precision,
              "options": vars(options), "phases": {}, "devices": jax_devices()}
    if initial:
        load_weights_in_parts(model.first_stage_variables, options.initial_weights)
        # Where the run starts, to set each phase's gain against.
        record["initial"] = {"validation": jax_training.evaluate_on_device(
            model, validation_images)}
        print(f"initial weights from {options.initial_weights}; validation "
              f"{json.dumps(record['initial']['validation'])}", flush=True)
        _write_json(out / RECORD_FILE, record)

    def checkpoint(model, phase):
        # One folder per phase, so a failed adversarial phase leaves the
        # likelihood phase's weights to fall back on; the first stage's only,
        # since both phases' with the discriminator's would not fit through
        # the machine's output.
        save_weights_in_parts(model.first_stage_variables, out / phase)
        _write_json(out / RECORD_FILE, record)
        print(f"checkpoint written ({time.perf_counter() - begin:.0f} s in)", flush=True)

    phases = [("likelihood", options.likelihood_minutes, options.learning_rate, False, 200),
              ("adversarial", options.adversarial_minutes, options.adversarial_learning_rate,
               True, 200)]
    for name, minutes, rate, adversarial, warmup in phases:
        if minutes <= 0:
            continue
        # A fresh Adam per phase, as `cvae train --initial-model` starts one;
        # its step count restarts, so the KL warm-up must not ramp again.
        if name == "adversarial":
            model.config = model.config.replace(kl_warmup_steps=0)
        model.compile(optimizer=keras.optimizers.Adam(rate))
        print(f"{name} phase: {minutes} minutes, batch {options.batch_size}, "
              f"peak learning rate {rate}", flush=True)
        result = jax_training.train_on_device(
            model, train_images, minutes, options.batch_size, rate, adversarial,
            warmup_steps=warmup, seed=options.seed,
            checkpoint=functools.partial(checkpoint, phase=name),
            checkpoint_minutes=options.checkpoint_minutes)
        record["phases"][name] = result
        if result["diverged"]:
            _write_json(out / RECORD_FILE, record)
            raise CvaeError(f"the loss became NaN in the {name} phase; its last checkpoint "
                            f"({out / name}) stands")
        result["validation"] = jax_training.evaluate_on_device(model, validation_images)
        print(f"{name} phase done: {result['steps']} steps ({result['epochs']:.1f} epochs), "
              f"{result['images_per_second']:.0f} images/s; validation "
              f"{json.dumps(result['validation'])}", flush=True)
        _write_json(out / RECORD_FILE, record)
        kl = result["validation"]["kl_loss"]
        if kl < COLLAPSED_KL:
            # Said, not stopped: an untrained model's KL is as low, and a
            # short run (a smoke test) may end there.
            print(f"jax_train.py: warning: the validation KL is {kl:.3g} nats per face: "
                  f"if this run was long, the posterior collapsed (try a lower "
                  f"--learning-rate)", flush=True)
    record["speed"] = jax_training.coding_speed(model, validation_images)
    print(f"speed: {json.dumps(record['speed'])}", flush=True)
    _write_json(out / RECORD_FILE, record)
    if options.second_stage_epochs:
        _train_second_stage(model, np.concatenate([train_images, validation_images]), options,
                            record)


def _train_second_stage(model, images, options, record):
    from cvae.saving import save_weights_in_parts
    from cvae.second_stage import fit_second_stage

    out = Path(options.out)
    begin = time.perf_counter()
    print(f"second stage: {options.second_stage_epochs} epochs on the codes of {len(images)} "
          f"faces", flush=True)
    combined = fit_second_stage(model, images, epochs=options.second_stage_epochs,
                                seed=options.seed)
    save_weights_in_parts(combined.second_stage_decoder.weights, out / SECOND_STAGE_FOLDER)
    record["second_stage"] = {"config": combined.config.to_dict(), "faces": len(images),
                              "epochs": options.second_stage_epochs,
                              "seconds": time.perf_counter() - begin}
    _write_json(out / RECORD_FILE, record)
    print(f"second stage written ({record['second_stage']['seconds']:.0f} s)", flush=True)
    if not options.keep_likelihood_weights and (out / "likelihood").exists() \
            and "adversarial" in record["phases"]:
        shutil.rmtree(out / "likelihood")


def _settings(items):
    settings = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise CvaeError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError as error:
            raise CvaeError(f"--set {item!r}: the value is not JSON ({error})") from None
    return settings


def jax_devices():
    import jax

    return [f"{device.device_kind} ({device.platform})" for device in jax.devices()]


def _write_json(path, record):
    from cvae.atomic import write_text

    write_text(path, json.dumps(record, indent=2, default=str) + "\n")


# --- assemble (here) ------------------------------------------------------------

def run_assemble(options):
    from cvae.codec.litert import write_litert_files
    from cvae.config import VAEConfig
    from cvae.model import VAE
    from cvae.saving import load_model, load_weights_in_parts, save_model

    run = Path(options.run)
    if not options.output.endswith(".keras"):
        raise CvaeError(f"the output must end in .keras, got {options.output}")
    if Path(options.output).exists() and not options.force:
        raise CvaeError(f"{options.output} exists (use --force to overwrite)")
    if not (run / RECORD_FILE).is_file():
        raise CvaeError(f"{run}: no {RECORD_FILE}; is it a folder that `train` wrote?")
    record = json.loads((run / RECORD_FILE).read_text())
    second_stage = record.get("second_stage") if options.phase == "adversarial" else None
    config = (second_stage or record)["config"]
    model = VAE(VAEConfig.from_dict(config), dtype=record["precision"])
    load_weights_in_parts(model.first_stage_variables, run / options.phase)
    if second_stage:
        load_weights_in_parts(model.second_stage_decoder.weights, run / SECOND_STAGE_FOLDER)
    save_model(model, options.output)
    if second_stage:
        print(f"wrote {options.output}: the first stage and its second stage")
        # As `cvae second-stage` does: the codec's runtime without TensorFlow.
        for path in write_litert_files(load_model(options.output), options.output):
            print(f"wrote {path}")
    else:
        print(f"wrote {options.output} (the {options.phase} phase's first stage; the "
              f"discriminator was not brought back, so a fine-tuning run starts a fresh one)")


# --- report (here) --------------------------------------------------------------

def run_report(options):
    from repository import replace_between_markers

    run = Path(options.run)
    record = json.loads((run / RECORD_FILE).read_text())
    settings = record["options"]
    start = (f"fine-tuned from the first stage in `{settings['initial_weights']}`"
             if settings.get("initial_weights")
             else f"`{settings.get('preset') or DEFAULT_PRESET}` preset, from fresh weights")
    lines = [f"Measured by `jax_train.py train` on {', '.join(record['devices'])}, "
             f"{record['precision']}, batch {settings['batch_size']}, "
             f"{record['config']['image_size']} px faces ({start}).", "",
             "| what | measured |", "|---|---|"]
    if "initial" in record:
        validation = record["initial"]["validation"]
        lines.append(f"| before training: validation PSNR, posterior means "
                     f"({validation['images']:,} faces) | {validation['psnr']:.2f} dB |")
    for name, phase in record["phases"].items():
        validation = phase.get("validation", {})
        lines.append(f"| {name} phase: training, after the first (compiling) step | "
                     f"{phase['images_per_second']:,.0f} images/s ({phase['steps']:,} steps, "
                     f"{phase['epochs']:.1f} epochs in {phase['minutes']:g} minutes) |")
        if "psnr" in validation:
            lines.append(f"| {name} phase: validation PSNR, posterior means "
                         f"({validation['images']:,} faces) | {validation['psnr']:.2f} dB |")
    speed = record.get("speed", {})
    for name in ("encode", "decode"):
        if f"{name}_images_per_second" in speed:
            lines.append(f"| {name}, batch {speed['batch']}, jitted (median of 5) | "
                         f"{speed[f'{name}_images_per_second']:,.0f} images/s |")
    lines += ["", "Reproduce: docs/training.md, \"On a GPU machine with JAX\", then "
              f"`python scripts/jax_train.py report RUN`."]
    replace_between_markers(options.doc, "gpu-training", "\n".join(lines))
    print(f"rewrote the gpu-training section of {options.doc}")


if __name__ == "__main__":
    sys.exit(run_script(main))
