#!/usr/bin/env python
"""The model-v2 study: candidate designs trained for the same wall-clock
budget on the same data, each scored the same way, so the flagship is chosen
from a table.

Data: UTKFace train plus CelebA minus a fixed held-out tenth (by a hash of
the file name), CelebA cropped by --celeba-crop-box. Each candidate trains
with `cvae.train` for --minutes (one core each when started with taskset),
then gets a second-stage VAE (`cvae.model.second_stage`) on 10,000 training codes
and is scored on utkface/val and the CelebA held-out part:

- reconstruction PSNR / SSIM from z_mean, beside PCA with as many components;
- SWD (x1e3, per pyramid level, finest first) of the reconstructions and of
  500 samples against real held-out faces, beside PCA-Gaussian samples;
- the face-detection rate (`cvae.data.detection.face_rate`) of 500 samples from
  the second stage and from the raw N(0, I) prior.

Each candidate writes runs/study/NAME/study.json; every invocation then
rewrites docs/results/study/study.json and the table in research/model/notebook.md
from all finished candidates. Runs resume after a kill; a scored run is reused.

    python research/model/model_study.py --utkface ../shared/faces/utkface \\
        --celeba ../shared/faces/celeba_small --candidates v1-faces,residual
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# The studies share the document-writing helpers of scripts/repository.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import CELEBA_HELD_OUT, REPOSITORY_ROOT, replace_between_markers

from cvae.atomic import atomic_path, write_text
from cvae.cli.arguments import HelpFormatter, crop_box, positive_float, positive_int
from cvae.data import datasets
from cvae.data.detection import face_rate
from cvae.errors import CvaeError, run_script
from cvae.evaluation.evaluate import fit_pca, reconstruction_metrics, samples_entry, swd_entry
from cvae.figures import image_grid, save_image
from cvae.model.saving import load_model
from cvae.model.second_stage import fit_second_stage
from cvae.training.runs import HISTORY_FILE, MODEL_FILE, TrainOptions, is_unfinished, read_history
from cvae.training.trainer import train

# Same for every candidate: the KL ramp is shortened from the faces preset's
# 2,000 steps because a 30-minute budget is about 2,000 steps in all.
COMMON = {"kl_warmup_steps": 500}
# A residual network without normalization: GroupNormalization and SiLU were
# about half of v1's step on this CPU, and cost 1.6x in speed.
RESIDUAL = {"normalization": "none", "activation": "relu", "block": "residual",
            "encoder_extra_convs": 2, "decoder_extra_convs": 2, "output_filters": 16}
CANDIDATES = {
    "v1-faces": ("v1: the `faces` preset (GroupNorm, SiLU, β = 8)", {}),
    "residual": ("residual blocks, no normalization, ReLU, full-resolution output stage, β = 1",
                 {**RESIDUAL, "beta": 1.0}),
    "residual-pyramid": ("`residual` + Laplacian-pyramid term (weight 1)",
                         {**RESIDUAL, "beta": 1.0, "pyramid_weight": 1.0}),
    "residual-beta4": ("`residual` at β = 4", {**RESIDUAL, "beta": 4.0}),
    # Halfway into the budget, so the discriminator meets reconstructions
    # that are already faces (VQGAN likewise starts it late).
    "residual-patchgan": ("`residual` + PatchGAN adversarial term (adaptive weight 0.5, "
                          "from step 1,000)",
                          {**RESIDUAL, "beta": 1.0, "adversarial_weight": 0.5,
                           "adversarial_start_step": 1000}),
}
SAMPLES = 500
SECOND_STAGE_IMAGES = 10000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--utkface", required=True, help="folder holding train/ and val/")
    parser.add_argument("--celeba", required=True, help="folder of CelebA images")
    parser.add_argument("--celeba-crop-box", type=crop_box, default=(9, 19, 70, 70),
                        help="LEFT,TOP,WIDTH,HEIGHT framing CelebA like UTKFace")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help=f"comma-separated names among {', '.join(CANDIDATES)}")
    parser.add_argument("--minutes", type=positive_float, default=30.0,
                        help="training budget per candidate (wall clock)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="batch size")
    parser.add_argument("--runs", default="runs/study", help="folder of the runs and data cache")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results/study"),
                        help="folder for study.json and the sample figure")
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "research/model/notebook.md"),
                        help="the document whose \"study\" section is rewritten")
    args = parser.parse_args(argv)
    names = [name for name in args.candidates.split(",") if name]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise CvaeError(f"unknown candidates {unknown}; choose among {', '.join(CANDIDATES)}")

    runs = Path(args.runs)
    arrays = prepare_data(Path(args.utkface), Path(args.celeba), args.celeba_crop_box,
                          runs / "data")
    for name in names:
        result_file = runs / name / "study.json"
        if result_file.is_file():
            print(f"{name}: already scored ({result_file})", flush=True)
            continue
        run = runs / name
        if not (run / MODEL_FILE).is_file() or is_unfinished(run):
            print(f"{name}: training for {args.minutes:g} minutes", flush=True)
            train(TrainOptions(data=str(arrays["train"]), validation_data=str(arrays["utk_val"]),
                               out=str(run), epochs=1000, batch_size=args.batch_size,
                               time_limit_minutes=args.minutes, seed=0, tensorboard=False,
                               verbose=2, config_overrides={**COMMON, **CANDIDATES[name][1]}))
        result = score(name, run, arrays)
        write_text(result_file, json.dumps(result, indent=2) + "\n")
    write_table(runs, Path(args.out), Path(args.doc))
    return 0


def prepare_data(utkface, celeba, celeba_crop, cache):
    """The study's arrays as .npy files, decoded once and reused by every candidate."""
    files = {name: cache / f"{name}.npy"
             for name in ("train", "utk_val", "celeba_val")}
    if all(path.is_file() for path in files.values()):
        return files
    print(f"decoding the study's images into {cache}", flush=True)
    utk_train, _ = datasets.read_dataset(utkface / "train", 128, progress=True)
    utk_val, _ = datasets.read_dataset(utkface / "val", 128, progress=True)
    celeba_train, celeba_val = datasets.read_dataset(celeba, 128, framing=celeba_crop,
                                                     validation_fraction=CELEBA_HELD_OUT,
                                                     progress=True)
    arrays = {"train": np.concatenate([utk_train, celeba_train]), "utk_val": utk_val,
              "celeba_val": celeba_val}
    cache.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        with atomic_path(files[name]) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, array)
    return files


def score(name, run, arrays):
    start = time.monotonic()
    train_images = np.load(arrays["train"], mmap_mode="r")
    rng = np.random.default_rng(0)
    count = min(SECOND_STAGE_IMAGES, len(train_images))
    subset = np.asarray(train_images[np.sort(rng.choice(len(train_images), count,
                                                        replace=False))])
    model = load_model(run / MODEL_FILE)
    print(f"{name}: fitting the second stage", flush=True)
    model = fit_second_stage(model, subset)
    pca = fit_pca(subset, model.config.latent_dim, log=print)
    history = read_history(run / HISTORY_FILE)
    result = {"name": name, "description": CANDIDATES[name][0],
              "config": model.config.to_dict(), "epochs": len(history),
              "training_s": history[-1].get("wall_time_s") if history else None,
              "images_per_s": _training_speed(history, len(train_images)),
              "parameters": int(model.count_params()), "pca_fitted_on": pca.fitted_on}
    held_out = {}
    for part in ("utk_val", "celeba_val"):
        originals = np.load(arrays[part]).astype(np.float32) / 255.0
        held_out[part] = originals
        reconstructions = model.reconstruct(originals)
        pca_reconstructions = pca.reconstruct(originals)
        result[part] = {"model": reconstruction_metrics(originals, reconstructions),
                        "pca": reconstruction_metrics(originals, pca_reconstructions),
                        "model_swd": swd_entry(originals, reconstructions, 0),
                        "pca_swd": swd_entry(originals, pca_reconstructions, 0)}
    reference = np.concatenate([held_out["utk_val"], held_out["celeba_val"]])
    reference = reference[np.random.default_rng(1).permutation(len(reference))[:SAMPLES]]
    samples = {sampler: model.generate(SAMPLES, seed=0, sampler=sampler)
               for sampler in ("second-stage", "prior")}
    samples["pca"] = pca.sample(SAMPLES, seed=0)
    result["samples"] = {kind: samples_entry(reference, images, 0)
                         for kind, images in samples.items()}
    result["real_face_rate"] = face_rate(reference)
    result["scoring_s"] = round(time.monotonic() - start, 1)
    save_image(image_grid([samples["second-stage"][:8], samples["prior"][:8],
                           held_out["celeba_val"][:8], model.reconstruct(held_out["celeba_val"][:8])]),
               run / "study.png")
    return result


def _training_speed(history, train_count):
    """Images per second in the first epoch, its validation and figures
    included; None when the budget ended inside it."""
    if len(history) < 2 or not history[0].get("wall_time_s"):
        return None
    return round(train_count / history[0]["wall_time_s"], 1)


def write_table(runs, out, doc):
    results = [json.loads(path.read_text(encoding="utf-8"))
               for name in CANDIDATES for path in [runs / name / "study.json"] if path.is_file()]
    if not results:
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "study.json", json.dumps(results, indent=2) + "\n")
    rows = ["| candidate | what | img/s | epochs | UTK val PSNR / SSIM | CelebA PSNR / SSIM | "
            "recon SWD (finest, next) | 2nd-stage samples: faces, SWD | N(0, I) samples: faces, SWD |",
            "|---|---|---|---|---|---|---|---|---|"]
    for entry in results:
        utk, celeba, samples = entry["utk_val"], entry["celeba_val"], entry["samples"]
        rows.append(
            f"| `{entry['name']}` | {entry['description']} | {entry['images_per_s'] or '-'} | "
            f"{entry['epochs']} | {utk['model']['psnr']:.2f} / {utk['model']['ssim']:.3f} | "
            f"{celeba['model']['psnr']:.2f} / {celeba['model']['ssim']:.3f} | "
            f"{_levels(utk['model_swd'])} | {_samples(samples['second-stage'])} | "
            f"{_samples(samples['prior'])} |")
    first = results[0]
    rows.append(f"| PCA-{first['config']['latent_dim']} | fitted on {first['pca_fitted_on']} "
                f"training images | | | {first['utk_val']['pca']['psnr']:.2f} / "
                f"{first['utk_val']['pca']['ssim']:.3f} | {first['celeba_val']['pca']['psnr']:.2f} / "
                f"{first['celeba_val']['pca']['ssim']:.3f} | {_levels(first['utk_val']['pca_swd'])} | "
                f"Gaussian: {_samples(first['samples']['pca'])} | |")
    rows.append(f"\nReal held-out faces: the detector finds a face in "
                f"{100 * first['real_face_rate']:.0f}%.")
    replace_between_markers(doc, "study", "\n".join(rows))
    print("\n".join(rows))


def _levels(entry):
    return f"{entry['swd_levels'][0]:.0f}, {entry['swd_levels'][1]:.0f}"


def _samples(entry):
    return f"{100 * entry['face_rate']:.0f}%, {_levels(entry)}"


if __name__ == "__main__":
    sys.exit(run_script(main))
