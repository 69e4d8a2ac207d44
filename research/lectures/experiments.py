#!/usr/bin/env python
"""The reference lectures' experiments, on real faces, in under an hour on 2 CPU cores.

Four small VAEs (the `seed` preset's network at 64x64, Gaussian likelihood
with a learned scale, 8 epochs each on the training folder) are trained with
`cvae.train`, then scored with `cvae evaluate`'s metrics on 64x64 held-out
images (area-downsampled from 128x128):

  1. autoencoder (beta = 0) vs VAE at latent dimension 10: samples from N(0, I);
  2. VAE at latent dimension 2 vs 10, beside the shipped default model (its
     128x128 outputs downsampled to 64x64);
  3. loss terms: reconstruction + KL (the VAE) vs KL only vs reconstruction
     only (the autoencoder): latent histograms and samples.

Writes docs/results/experiments/ (samples.png, latent_<name>.png,
experiments.json) and docs/exploration.md between the "experiments" markers. Runs go
to runs/experiments/<name>; a finished run is reused, an interrupted one resumes.

    python research/lectures/experiments.py --data ../shared/faces/utkface/train \
        --val-data ../shared/faces/utkface/val

After the shipped model changes, `--default-only` scores only the last row
again and keeps the four runs' rows, which do not depend on it.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

# The studies share the document-writing helpers of scripts/repository.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from PIL import Image

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import REPOSITORY_ROOT, replace_between_markers

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets, image_files
from cvae.errors import CvaeError, run_script
from cvae.evaluation import metrics
from cvae.evaluation.evaluate import reconstruction_metrics, split_halves, swd_entry
from cvae.figures import GRID_GAP, image_grid, plot_latent_histograms, save_image
from cvae.model.saving import DEFAULT_MODEL_PATH, load_model
from cvae.training.runs import MODEL_FILE, RUN_RECORD_FILE, TrainOptions, is_unfinished
from cvae.training.trainer import train

SIZE = 64
COMMON = {"image_size": SIZE, "likelihood": "gaussian", "decoder_scale": "learned",
          "kl_warmup_steps": 0}
EXPERIMENTS = {
    "vae-10": ("VAE, latent 10 (reconstruction + KL)", {"latent_dim": 10, "beta": 1.0}),
    "ae-10": ("autoencoder, latent 10 (reconstruction only, β = 0)",
              {"latent_dim": 10, "beta": 0.0}),
    "vae-2": ("VAE, latent 2", {"latent_dim": 2, "beta": 1.0}),
    "kl-only-10": ("KL only, latent 10 (reconstruction weight 0)",
                   {"latent_dim": 10, "beta": 1.0, "reconstruction_weight": 0.0}),
}
SHOWN = 10


def _finished(run, epochs):
    """Whether `run` finished training for `epochs` epochs, so it can be reused."""
    if not (run / MODEL_FILE).is_file() or not (run / RUN_RECORD_FILE).is_file() \
            or is_unfinished(run):
        return False
    record = json.loads((run / RUN_RECORD_FILE).read_text(encoding="utf-8"))
    return record.get("options", {}).get("epochs") == epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="training images (utkface/train)")
    parser.add_argument("--val-data", required=True, help="held-out images (utkface/val)")
    parser.add_argument("--epochs", type=positive_int, default=8, help="epochs per run")
    parser.add_argument("--runs", default="runs/experiments",
                        help="folder of the training runs (finished ones are reused)")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results/experiments"),
                        help="folder for experiments.json and the figures")
    parser.add_argument("--default-model",
                        default=str(DEFAULT_MODEL_PATH),
                        help="the model of the table's last row")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/exploration.md"),
                        help="the document whose \"experiments\" section is rewritten")
    parser.add_argument("--default-only", action="store_true",
                        help="score only the default model again (after the shipped model "
                             "changed), keeping the four runs' entries and sample rows from "
                             "the last full run's experiments.json and samples.png in --out; "
                             "the runs themselves do not depend on the shipped model")
    args = parser.parse_args(argv)

    image_files.list_image_files(args.data)  # A missing folder fails now, not after the first runs.
    full_size, _ = datasets.read_dataset(args.val_data, 128)
    originals = metrics.downsample(full_size.astype(np.float32) / 255.0, SIZE)
    reference, other_half = split_halves(originals)
    if args.default_only:
        return _rescore_default(args, full_size, originals, reference)
    models = {}
    for name, (_, overrides) in EXPERIMENTS.items():
        run = Path(args.runs) / name
        if _finished(run, args.epochs):
            print(f"{name}: reusing the finished run in {run}", flush=True)
        else:
            print(f"{name}: training", flush=True)
            train(TrainOptions(data=args.data, validation_data=args.val_data, out=str(run),
                               preset="seed", epochs=args.epochs, batch_size=64,
                               learning_rate=1e-3, seed=0, tensorboard=False, verbose=2,
                               config_overrides={**COMMON, **overrides}))
        models[name] = load_model(run / MODEL_FILE)

    held_out = np.round(originals * 255).astype(np.uint8)
    results = {"images": len(held_out), "epochs": args.epochs,
               "real_vs_real_swd": swd_entry(reference, other_half, 0)["swd"]}
    out = Path(args.out)
    sample_rows, labels = [], []
    for name, model in models.items():
        z_mean, z_log_var = model.encode(held_out)
        samples = model.generate(len(reference), seed=0)
        kl = metrics.kl_per_dimension(z_mean, z_log_var)
        results[name] = {
            "description": EXPERIMENTS[name][0],
            "psnr": reconstruction_metrics(originals, model.decode(z_mean))["psnr"],
            "swd": swd_entry(reference, samples, 0)["swd"],
            "kl": float(kl.sum()), "active_units": metrics.active_units(z_mean),
            # How far the codes' centre sits from the prior's, on the worst dimension.
            "largest_mean_offset": float(np.max(np.abs(np.mean(z_mean, axis=0)))),
            "epochs_run": len(_history(Path(args.runs) / name)),
            "training_s": (_history(Path(args.runs) / name) or [{}])[-1].get("wall_time_s", 0.0),
        }
        sample_rows.append(samples[:SHOWN])
        labels.append(name)
        codes = z_mean + np.exp(0.5 * z_log_var) * np.random.default_rng(0).standard_normal(
            z_mean.shape)
        dims = [int(d) for d in np.argsort(-kl, kind="stable")]
        plot_latent_histograms(codes, dims, kl, out / f"latent_{name}.png", columns=10)
        print(f"{name}: {results[name]}", flush=True)

    _write(args, results, sample_rows, labels, full_size, originals, reference)
    return 0


def _rescore_default(args, full_size, originals, reference):
    """--default-only: the four runs' entries and sample rows as the last
    full run wrote them, and the default model's scored anew."""
    out = Path(args.out)
    try:
        results = json.loads((out / "experiments.json").read_text(encoding="utf-8"))
        with Image.open(out / "samples.png") as picture:
            grid = np.asarray(picture.convert("RGB"))
    except (OSError, ValueError) as error:
        raise CvaeError(f"--default-only needs a full run's experiments.json and samples.png "
                        f"in {out}: {error}") from None
    missing = [name for name in EXPERIMENTS if name not in results]
    if missing:
        raise CvaeError(f"--default-only: {out / 'experiments.json'} has no entry for "
                        f"{', '.join(missing)}; run without it first")
    # image_grid's layout: a row of SHOWN images per run, GRID_GAP pixels apart.
    step = SIZE + GRID_GAP
    sample_rows = [np.stack([grid[r * step:r * step + SIZE, c * step:c * step + SIZE]
                             for c in range(SHOWN)])
                   for r in range(len(EXPERIMENTS))]
    _write(args, results, sample_rows, list(EXPERIMENTS), full_size, originals, reference)
    return 0


def _write(args, results, sample_rows, labels, full_size, originals, reference):
    """Score the default model, then write the figure, the JSON and the section."""
    out = Path(args.out)
    default = load_model(args.default_model)
    default_samples = metrics.downsample(default.generate(len(reference), seed=0), SIZE)
    named = ("the shipped model" if Path(args.default_model) == Path(DEFAULT_MODEL_PATH)
             else f"`{Path(args.default_model).name}`")
    results["default"] = {
        "description": f"{named}, latent {default.config.latent_dim} (128×128, downsampled)",
        "psnr": reconstruction_metrics(
            originals, metrics.downsample(default.reconstruct(full_size), SIZE))["psnr"],
        "swd": swd_entry(reference, default_samples, 0)["swd"],
    }
    sample_rows = [*sample_rows, default_samples[:SHOWN]]
    labels = [*labels, "default"]
    out.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(sample_rows), out / "samples.png")
    write_text(out / "experiments.json", json.dumps(results, indent=2) + "\n")
    # Links relative to the document, wherever --out puts the figures.
    figures = Path(os.path.relpath(out, Path(args.readme).parent)).as_posix()
    section = experiments_section(results, labels, figures)
    replace_between_markers(args.readme, "experiments", section)
    print(section)


def _history(run):
    from cvae.training.runs import HISTORY_FILE, read_history

    history = run / HISTORY_FILE
    return read_history(history) if history.is_file() else []


def experiments_section(results, order, figures="results/experiments"):
    table = ["| run | what | reconstruction PSNR (dB) | sample SWD ×10³ | KL (nats) | active units |",
             "|---|---|---|---|---|---|"]
    for name in order:
        entry = results[name]
        table.append(f"| `{name}` | {entry['description']} | {entry['psnr']:.2f} | "
                     f"{entry['swd']:.1f} | {entry.get('kl', float('nan')):.1f} | "
                     f"{entry.get('active_units', '-')} |".replace("| nan |", "| - |"))
    vae, ae, small, kl_only = (results[n] for n in ("vae-10", "ae-10", "vae-2", "kl-only-10"))

    def compare(first, second, metric, lower_is_better, tolerance):
        if abs(first[metric] - second[metric]) < tolerance:
            return "about as well"
        better = (first[metric] < second[metric]) == lower_is_better
        return "better" if better else "worse"

    offset = vae["largest_mean_offset"]
    off_centre = (f" After {results['epochs']} epochs one of the VAE's dimensions still has its "
                  f"codes centred at {offset:.1f} instead of 0 (the first histogram), so its "
                  f"samples are still far from faces." if offset > 2 else "")

    findings = [
        f"1. **AE vs VAE (latent 10).** The VAE's N(0, I) samples are "
        f"{compare(vae, ae, 'swd', True, 1.0)} than the autoencoder's (SWD {vae['swd']:.1f} vs "
        f"{ae['swd']:.1f}): nothing makes an autoencoder's codes fill N(0, I), so prior draws "
        f"land where its decoder never trained. The autoencoder reconstructs "
        f"{compare(ae, vae, 'psnr', False, 0.05)} ({ae['psnr']:.2f} vs {vae['psnr']:.2f} dB)."
        f"{off_centre}",
        f"2. **Latent 2 vs 10.** Two dimensions reconstruct {compare(small, vae, 'psnr', False, 0.05)} "
        f"({small['psnr']:.2f} vs {vae['psnr']:.2f} dB) and sample "
        f"{compare(small, vae, 'swd', True, 1.0)} (SWD {small['swd']:.1f} vs {vae['swd']:.1f}); "
        f"the shipped model, with 128 dimensions and longer training, reaches "
        f"{results['default']['psnr']:.2f} dB and SWD {results['default']['swd']:.1f} at this size.",
        f"3. **Loss terms.** KL alone matches the prior exactly (KL {kl_only['kl']:.1f} nats, "
        f"{kl_only['active_units']} active units) and so carries nothing about the image: "
        f"reconstruction PSNR {kl_only['psnr']:.2f} dB; its decoder gets no gradient, so "
        f"its samples are the untrained network's output. Reconstruction alone (the autoencoder) has codes of KL {ae['kl']:.0f} nats, "
        f"far from N(0, 1) in the histograms. Both terms together pull the codes towards "
        f"N(0, 1) while they still describe the face.",
    ]
    return "\n".join([
        f"{results['images']} held-out faces at 64×64; {results['epochs']} epochs per run, "
        f"{sum(results[name]['training_s'] for name in EXPERIMENTS) / 60:.0f} minutes of "
        f"training for the four runs together (their `wall_time_s`); real-vs-real SWD floor "
        f"{results['real_vs_real_swd']:.1f}.",
        "", *table, "", *findings, "",
        "![N(0, I) samples, a row per run: vae-10, ae-10, vae-2, kl-only-10, default]"
        f"({figures}/samples.png)",
        "",
        "Latent histograms (codes z ~ q(z|x) of held-out faces, clipped to ±4, N(0, 1) in "
        "red): "
        f"[VAE]({figures}/latent_vae-10.png), "
        f"[KL only]({figures}/latent_kl-only-10.png), "
        f"[reconstruction only]({figures}/latent_ae-10.png), "
        f"[latent 2]({figures}/latent_vae-2.png).",
    ])


if __name__ == "__main__":
    sys.exit(run_script(main))
