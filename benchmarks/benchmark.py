#!/usr/bin/env python
"""Speed of cvae on this machine, measured in one run as ratios and rates.

  1. training images/s of the `seed` preset through the project (auto
     precision, the cached uint8 pipeline) against the reference slides' code
     in plain float32 (benchmarks/baseline.py), on the same images, over whole
     epochs as training runs them, and for the median step alone; the two
     are timed in alternating rounds and each ratio is the median of rounds;
  2. training images/s of the default `faces` preset;
  3. the data pipeline alone, against the training step it feeds;
  4. encode + decode latency at batch 1 and throughput at batch 256
     (the shipped model);
  5. `cvae compress` / `cvae decompress` wall time per file, start-up
     included, for one file and per file in a batch of 100, with peak memory.

Writes benchmarks/results.json and docs/speed.md between the "benchmarks"
markers.

    python -m benchmarks.benchmark --data ../shared/faces/utkface/train
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import baseline
from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets, image_files
from cvae.errors import CvaeError, run_script
from cvae.figures import save_image
from cvae.model.config import get_preset
from cvae.model.saving import load_model
from cvae.model.vae import VAE
from cvae.precision import resolve_precision
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

BATCH = 64


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", help="a folder of face images (default: synthetic images)")
    parser.add_argument("--images", type=positive_int, default=2048, help="how many images to train on")
    parser.add_argument("--epochs", type=positive_int, default=2, help="timed epochs per round and side")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="alternating rounds of the two trainers")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/results.json"),
                        help="the JSON file of all measurements")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/speed.md"),
                        help="the document whose \"benchmarks\" section is rewritten")
    args = parser.parse_args(argv)

    images = _images(args)
    import keras
    import tensorflow as tf

    results = {"machine": _machine(tf), "images": len(images), "batch_size": BATCH,
               "precision_auto": resolve_precision("auto")}
    print(f"machine: {results['machine']}", flush=True)

    project = _project_trainer("seed", images)
    reference = _baseline_trainer(images, keras)
    rounds = []
    for round_index in range(args.rounds):
        project_rates, baseline_rates = project(args.epochs), reference(args.epochs)
        rounds.append({"project": project_rates, "baseline": baseline_rates,
                       "ratio": project_rates["images_per_s"] / baseline_rates["images_per_s"],
                       "steady_ratio": project_rates["steady_images_per_s"]
                       / baseline_rates["steady_images_per_s"]})
        print(f"round {round_index + 1}: seed preset {project_rates}, slides' float32 code "
              f"{baseline_rates}", flush=True)

    def median(side, key):
        return float(np.median([r[side][key] if side != "ratio" else r[key] for r in rounds]))

    results["seed_training"] = {
        "rounds": rounds,
        "project_images_per_s": median("project", "images_per_s"),
        "baseline_images_per_s": median("baseline", "images_per_s"),
        "speedup": float(np.median([r["ratio"] for r in rounds])),
        "project_steady_images_per_s": median("project", "steady_images_per_s"),
        "baseline_steady_images_per_s": median("baseline", "steady_images_per_s"),
        "steady_speedup": float(np.median([r["steady_ratio"] for r in rounds])),
    }
    faces_trainer = _project_trainer("faces", images)
    results["faces_training_images_per_s"] = faces_trainer(1)["images_per_s"]
    results["pipeline_images_per_s"] = _pipeline_rate(images)
    print(f"faces preset {results['faces_training_images_per_s']:.1f} img/s; pipeline alone "
          f"{results['pipeline_images_per_s']:.0f} img/s", flush=True)
    results["inference"] = _inference(images)
    print(f"inference: {results['inference']}", flush=True)
    results["codec_commands"] = _codec_commands(images)
    print(f"codec commands: {results['codec_commands']}", flush=True)
    results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    write_text(args.out, json.dumps(results, indent=2) + "\n")
    section = benchmark_section(results)
    replace_between_markers(args.readme, "benchmarks", section)
    print(section)
    return 0


def _images(args):
    if args.data:
        paths = image_files.list_image_files(args.data)[:args.images]
        images, _ = image_files.load_images(paths, 128)
    else:
        images = np.random.default_rng(0).integers(0, 256, (args.images, 128, 128, 3),
                                                   dtype=np.uint8)
    if len(images) < 2 * BATCH:
        raise CvaeError(f"the benchmark needs at least {2 * BATCH} images, got {len(images)}")
    return images


def _machine(tf):
    gpus = tf.config.list_physical_devices("GPU")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"{len(gpus)} GPU(s), TensorFlow {tf.__version__}")


class _Timer:
    """Trains on the whole image set, epochs at a time, as `cvae train` runs
    `fit` (a new iterator each epoch), after one compiling epoch. Reports the
    rate over whole epochs, and the steady rate of the median step."""

    def __init__(self, model, dataset, images):
        self.model, self.dataset, self.images = model, dataset, images
        self.model.fit(self.dataset, epochs=1, verbose=0, shuffle=False)

    def __call__(self, epochs):
        clock = _step_clock()
        started = time.perf_counter()
        self.model.fit(self.dataset, epochs=epochs, verbose=0, callbacks=[clock], shuffle=False)
        elapsed = time.perf_counter() - started
        return {"images_per_s": epochs * self.images / elapsed,
                "steady_images_per_s": BATCH / float(np.median(np.diff(clock.times)))}


def _step_clock():
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    return StepClock()



def _project_trainer(preset, images):
    import keras

    model = VAE(get_preset(preset), seed=0, dtype=resolve_precision("auto"))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return _Timer(model, datasets.make_dataset(images, BATCH, shuffle=True, flip=True, seed=0),
                  len(images))


def _baseline_trainer(images, keras):
    keras.config.set_dtype_policy("float32")
    return _Timer(baseline.build_model(), baseline.make_dataset(images, BATCH), len(images))


def _pipeline_rate(images, batches=200):
    dataset = datasets.make_dataset(images, BATCH, shuffle=True, flip=True, seed=0).repeat()
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH / (time.perf_counter() - started)


def _inference(images):
    model = load_model()
    one = images[:1]
    model.reconstruct(one)  # Warm-up.
    latencies = []
    for _ in range(30):
        started = time.perf_counter()
        model.reconstruct(one)
        latencies.append(time.perf_counter() - started)
    batch = images[:256]
    model.reconstruct(batch)
    started = time.perf_counter()
    model.reconstruct(batch)
    return {"latency_batch_1_ms": 1e3 * float(np.median(latencies)),
            "images_per_s_batch_256": len(batch) / (time.perf_counter() - started)}


def _codec_commands(images, batch=100):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for index, image in enumerate(images[:batch]):
            save_image(image, folder / "in" / f"face{index:03d}.png")
        cvae = [sys.executable, "-m", "cvae.cli"]
        timings = {}
        for label, command in [
            ("compress_one_file_s", cvae + ["compress", str(folder / "in/face000.png"),
                                            "-o", str(folder / "one")]),
            ("decompress_one_file_s", cvae + ["decompress", str(folder / "one/face000.cvae"),
                                              "-o", str(folder / "one_out")]),
            ("compress_100_files_s", cvae + ["compress", str(folder / "in"),
                                             "-o", str(folder / "many")]),
            ("decompress_100_files_s", cvae + ["decompress", str(folder / "many"),
                                               "-o", str(folder / "many_out")]),
        ]:
            seconds, peak_mb = _timed(command)
            timings[label] = seconds
            timings["peak_memory_mb"] = max(timings.get("peak_memory_mb", 0.0), peak_mb)
        return timings


# A child's peak RSS counts what it inherited at fork, so the commands are
# started from a small launcher process rather than from this large one.
_LAUNCHER = """
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _timed(command):
    """(wall seconds, peak memory in MB) of one command."""
    output = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], check=True,
                            capture_output=True, text=True).stdout.split()
    return float(output[0]), float(output[1]) / 1024


def benchmark_section(results):
    seed = results["seed_training"]
    inference, codec = results["inference"], results["codec_commands"]
    rows = [
        ("`seed` preset training, through cvae (precision "
         f"{results['precision_auto']}, cached uint8 pipeline), over whole epochs",
         f"{seed['project_images_per_s']:.0f} images/s"),
        ("the slides' code, plain float32, float32 images from memory, over whole epochs",
         f"{seed['baseline_images_per_s']:.0f} images/s"),
        ("**speed-up over whole epochs** (median of per-round ratios)",
         f"**{seed['speedup']:.2f}×**"),
        ("speed-up of the median training step alone (bfloat16 against float32)",
         f"{seed['steady_speedup']:.2f}× ({seed['project_steady_images_per_s']:.0f} against "
         f"{seed['baseline_steady_images_per_s']:.0f} images/s)"),
        ("`faces` preset (default) training", f"{results['faces_training_images_per_s']:.0f} images/s"),
        ("data pipeline alone", f"{results['pipeline_images_per_s']:,.0f} images/s"),
        ("encode + decode, batch 1 (shipped model)", f"{inference['latency_batch_1_ms']:.0f} ms"),
        ("encode + decode, batch 256", f"{inference['images_per_s_batch_256']:.0f} images/s"),
        ("`cvae compress` one file, start-up included", f"{codec['compress_one_file_s']:.1f} s"),
        ("`cvae decompress` one file, start-up included", f"{codec['decompress_one_file_s']:.1f} s"),
        ("`cvae compress` 100 files", f"{codec['compress_100_files_s']:.1f} s "
                                      f"({1e3 * codec['compress_100_files_s'] / 100:.0f} ms/file)"),
        ("`cvae decompress` 100 files", f"{codec['decompress_100_files_s']:.1f} s "
                                        f"({1e3 * codec['decompress_100_files_s'] / 100:.0f} ms/file)"),
        ("peak memory of a compress/decompress command", f"{codec['peak_memory_mb']:.0f} MB"),
        ("peak memory of the benchmark (both trainers, data)", f"{results['peak_memory_mb']:.0f} MB"),
    ]
    target = seed["speedup"] >= 2.0
    round_ratios = ", ".join(f"{round_['ratio']:.2f}×" for round_ in seed["rounds"])
    return "\n".join([
        f"Measured on {results['machine']}; {results['images']} training images, batch "
        f"{results['batch_size']}.",
        "", "| what | measured |", "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows], "",
        f"Target (issue 6), ≥ 2× the slides' float32 code on this CPU, in training images/s: "
        f"**{'met' if target else 'not met'}** ({seed['speedup']:.2f}× over whole epochs). "
        f"Per-round whole-epoch ratios: {round_ratios}. bfloat16 arithmetic alone "
        f"gives the median step's {seed['steady_speedup']:.2f}×. The whole-epoch ratio can come "
        f"out higher because the slides' pipeline keeps tf.data's autotuning, whose thread can "
        f"make the iterator's teardown at each epoch's end wait (10 s when we first saw it, once "
        f"a run had gone on a while); cvae's pipeline turns autotuning off. That stall comes and "
        f"goes, and as it costs a fixed time per epoch its share shrinks as the data set grows, "
        f"so the median step is the steadier figure. The pipeline "
        f"delivers {results['pipeline_images_per_s'] / seed['project_images_per_s']:.0f}× "
        f"the images the fastest training step consumes, so it is never the bottleneck.",
        "",
        "Reproduce: `python -m benchmarks.benchmark --data ../shared/faces/utkface/train` "
        "(about 5 minutes, on an otherwise idle machine). The machines are noisy: compare "
        "ratios from one run, not "
        "absolute rates across runs.",
    ])


if __name__ == "__main__":
    sys.exit(run_script(main))
