#!/usr/bin/env python
"""Regenerate the results in docs/evaluation.md, the model card and the README.

Evaluates the shipped model and the `seed`-preset baseline with `cvae evaluate`'s
code on the same held-out images, beside PCA with each one's latent dimension,
and writes:

  docs/results/evaluation.json     every number, as `cvae evaluate --json` reports it
  docs/results/reconstructions.png a public-domain face (data/astronaut.png), then its
                                   reconstructions: PCA | v1 | shipped model | shipped
                                   model, codes refined | seed preset
  docs/results/samples.png         N(0, I) samples of the shipped model
  docs/results/samples_compared.png samples: shipped model | seed preset | PCA-Gaussian
  docs/results/samples_gmm.png     samples of the shipped model from its ex-post mixture
                                   (when saved_models/cvae-faces.gmm.npz exists)
  docs/evaluation.md and saved_models/README.md, between the "results" markers,
  and README.md's short table, between the "headline" markers

With --tables-only it rewrites the documents from docs/results/evaluation.json
without evaluating again. With --reuse-baselines it evaluates the shipped model
and keeps the baselines' entries (the seed preset, v1) from that file when their
inputs are unchanged: each baseline's entry records a hash of its model file,
its test images and its PCA's training images.

    python scripts/results.py --data ../shared/faces/utkface/val \
        --train-data ../shared/faces/utkface/train
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import (
    CELEBA_HELD_OUT,
    REPOSITORY_ROOT,
    add_showcase_arguments,
    load_showcase_face,
    replace_between_markers,
)

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets, image_files
from cvae.errors import run_script
from cvae.evaluation.evaluate import (
    evaluate,
    fit_pca,
    reconstruction_metrics,
    split_halves,
    swd_entry,
)
from cvae.figures import image_grid, save_image, tiled
from cvae.model.refinement import SUGGESTED_STEPS
from cvae.model.saving import DEFAULT_MODEL_PATH, load_model
from cvae.sampling.samplers import mixture_beside

SHOWN = 8


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="held-out images (utkface/val)")
    parser.add_argument("--train-data", required=True, help="training images, for PCA")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH),
                        help="the model to evaluate")
    parser.add_argument("--seed-model",
                        default=str(REPOSITORY_ROOT / "saved_models/baselines/seed-preset.keras"),
                        help="the seed preset's model, for comparison")
    parser.add_argument("--v1-model",
                        default=str(REPOSITORY_ROOT / "saved_models/baselines/faces-v1.keras"),
                        help="the first shipped model (v1), whose reconstructions are compared")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for evaluation.json and the figures")
    parser.add_argument("--iwae-samples", type=positive_int, default=16,
                        help="importance samples per image for the IWAE bound")
    parser.add_argument("--refine-steps", type=positive_int, default=SUGGESTED_STEPS,
                        help="also score the shipped model's reconstructions from codes "
                             "refined by this many steps (cvae.model.refinement)")
    parser.add_argument("--celeba", help="CelebA folder: its fixed held-out tenth (by a hash "
                        "of the file name), its faces aligned, is a second test set")
    add_showcase_arguments(parser)
    parser.add_argument("--tables-only", action="store_true",
                        help="rewrite the documents from OUT/evaluation.json, evaluating nothing")
    parser.add_argument("--reuse-baselines", action="store_true",
                        help="keep the seed preset's and v1's entries from OUT/evaluation.json "
                             "when their model file and images are unchanged (not after a "
                             "change to the evaluation code, which the check cannot see)")
    args = parser.parse_args(argv)
    if args.tables_only:
        results = json.loads((Path(args.out) / "evaluation.json").read_text(encoding="utf-8"))
        write_documents(results, args)
        return 0

    started = time.perf_counter()
    out = Path(args.out)
    previous = _previous_results(out) if args.reuse_baselines else {}
    models = {"faces": load_model(args.model), "seed": load_model(args.seed_model)}
    size = models["faces"].config.image_size
    images, _ = datasets.read_dataset(args.data, size)
    train_images, _ = datasets.read_dataset(args.train_data, size)
    celeba = None
    if args.celeba:
        # The held-out tenth, never trained on; PCA fitted on training faces as below.
        _, celeba = datasets.read_dataset(args.celeba, size, framing=image_files.Framing(align="on"),
                                          validation_fraction=CELEBA_HELD_OUT)
    results, pcas = {}, {}
    for name, model in models.items():
        path = Path(args.model if name == "faces" else args.seed_model)
        # The shipped model is always measured, so only a baseline's inputs are hashed.
        inputs = (inputs_sha256(path, images, train_images, args.iwae_samples)
                  if name != "faces" else None)
        if inputs is not None and _reusable(previous, name, inputs):
            results[name] = previous[name]
        else:
            pcas[name] = fit_pca(train_images, model.config.latent_dim)
            results[name] = evaluate(model, images, pca=pcas[name],
                                     iwae_samples=args.iwae_samples,
                                     refine_steps=args.refine_steps if name == "faces" else 0)
            if inputs is not None:
                results[name]["inputs_sha256"] = inputs
        results[name]["training"] = _training_record(path)
    if celeba is not None:
        results["faces_celeba"] = evaluate(models["faces"], celeba, pca=pcas["faces"],
                                           iwae_samples=2, refine_steps=args.refine_steps)
    v1 = load_model(args.v1_model) if Path(args.v1_model).is_file() else None
    if v1 is not None:
        inputs = inputs_sha256(Path(args.v1_model), images, celeba)
        if _reusable(previous, "v1", inputs):
            results["v1"] = previous["v1"]
        else:
            # Reconstructions only: v1 is here to show what v2 changed.
            results["v1"] = {"reconstruction": reconstruction_scores(v1, images),
                             "latent_dim": v1.config.latent_dim, "inputs_sha256": inputs}
            if celeba is not None:
                results["v1"]["celeba"] = reconstruction_scores(v1, celeba)
    mixture = mixture_beside(args.model)
    if mixture is not None:
        # The same comparison for the ex-post mixture sampler of `cvae generate --sampler gmm`.
        reference, _ = split_halves(images.astype(np.float32) / 255.0)
        gmm_samples = models["faces"].decode(mixture.sample(len(reference), seed=0))
        results["faces"]["samples_gmm"] = swd_entry(reference, gmm_samples, 0)
    results["seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "evaluation.json", json.dumps(results, indent=2) + "\n")

    face = load_showcase_face(args.showcase, size, crop_box=args.showcase_crop)[None]
    original = face.astype(np.float32) / 255
    # original | PCA | v1 (if kept) | the shipped model | its refined codes | the seed preset
    shown = [original, pcas["faces"].reconstruct(original)]
    shown += [v1.reconstruct(face)] if v1 is not None else []
    shown += [models["faces"].reconstruct(face),
              models["faces"].reconstruct(face, refine_steps=args.refine_steps),
              models["seed"].reconstruct(face)]
    save_image(image_grid([np.concatenate(shown)]), out / "reconstructions.png")
    samples = models["faces"].generate(4 * SHOWN, seed=0)
    save_image(tiled(samples, SHOWN), out / "samples.png")
    if "samples_gmm" in results["faces"]:
        save_image(tiled(gmm_samples[:4 * SHOWN], SHOWN), out / "samples_gmm.png")
    save_image(image_grid([samples[:SHOWN], models["seed"].generate(SHOWN, seed=0),
                           pcas["faces"].sample(SHOWN, seed=0)]), out / "samples_compared.png")

    write_documents(results, args)
    return 0


def write_documents(results, args):
    table = results_table(results, args)
    for document in (REPOSITORY_ROOT / "docs/evaluation.md",
                     REPOSITORY_ROOT / "saved_models/README.md"):
        replace_between_markers(document, "results", table)
    faces = results["faces"]
    face_rate = ([f"A stock face detector finds a face in {100 * faces['samples']['face_rate']:.1f}% "
                  f"of the shipped model's default samples (real held-out faces: "
                  f"{100 * faces['real_vs_real']['face_rate']:.1f}%, PCA-Gaussian samples: "
                  f"{100 * faces['pca']['samples']['face_rate']:.1f}%)."]
                 if "face_rate" in faces["samples"] else [])
    replace_between_markers(REPOSITORY_ROOT / "README.md", "headline", "\n".join([
        *main_table(results),
        "",
        f"On {faces['images']} held-out UTKFace faces; SWD ×10³ of decoded samples "
        f"against real faces (lower is better). All numbers, their definitions and the "
        f"targets: [docs/evaluation.md](docs/evaluation.md).",
        "", *face_rate, *v1_comparison(results)]))
    print(table)


def inputs_sha256(model_path, *inputs):
    """A hash of what an entry was measured on: the model file's bytes, then each
    input (an image array, a number, or None for one not given)."""
    digest = hashlib.sha256(Path(model_path).read_bytes())
    for value in inputs:
        if value is None:
            digest.update(b"none")
        elif isinstance(value, np.ndarray):
            digest.update(repr((value.shape, value.dtype.str)).encode())
            digest.update(np.ascontiguousarray(value).data)
        else:
            digest.update(repr(value).encode())
        digest.update(b"|")
    return digest.hexdigest()


def _previous_results(out):
    path = out / "evaluation.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _reusable(previous, name, inputs):
    """Whether the previous run's entry `name` was measured on these inputs."""
    if previous.get(name, {}).get("inputs_sha256") != inputs:
        return False
    print(f"results.py: reusing the {name} entry of the previous evaluation.json",
          file=sys.stderr)
    return True


def _training_record(model_path):
    record_path = model_path.with_suffix(".json")
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    # A fine-tuned model's record nests the stage it started from; count all stages.
    stages = []
    while record:
        stages.append(record)
        record = record.get("initial")
    epochs = sum(stage.get("epochs_run") or 0 for stage in stages)
    seconds = sum(stage["history"][-1].get("wall_time_s", 0.0) for stage in stages
                  if stage.get("history"))
    return {"epochs_run": epochs, "wall_time_s": seconds or None, "stages": len(stages),
            "best_epoch": stages[0].get("best", {}).get("epoch"),
            # Set when `cvae export --checkpoint last` wrote the model, not its best epoch.
            "exported": stages[0].get("exported"),
            "preset": stages[-1].get("options", {}).get("preset")}


def reconstruction_scores(model, images):
    """`cvae evaluate`'s reconstruction metrics of a model on uint8 images."""
    originals = images.astype(np.float32) / 255.0
    return reconstruction_metrics(originals, model.reconstruct(images))


def main_table(results):
    """The header, separator and rows of the main table (the README shows it too)."""
    faces, seed = results["faces"], results["seed"]

    def training(entry):
        record = entry["training"]
        if not record or record["wall_time_s"] is None:
            return "-"
        stages = f" in {record['stages']} stages" if record["stages"] > 1 else ""
        return f"{record['epochs_run']} epochs, {record['wall_time_s'] / 60:.0f} min{stages}"

    def row(label, reconstruction, swd=None, entry=None):
        cells = [label, f"{reconstruction['psnr']:.2f}", f"{reconstruction['ssim']:.3f}",
                 f"{reconstruction['psnr_64']:.2f}", f"{reconstruction['ssim_64']:.3f}",
                 f"{swd:.1f}" if swd is not None else "-"]
        if entry is None:
            cells += ["-", "-", "-", "-", "-"]
        else:
            likelihood = entry["likelihood"]
            cells += [f"{likelihood['negative_elbo']:,.0f}", f"{likelihood['kl']:.0f}",
                      f"{entry['latent']['active_units']}/{entry['latent_dim']}",
                      f"{likelihood['bits_per_dim']:.3f}" if likelihood["bits_per_dim"] else "-",
                      training(entry)]
        return "| " + " | ".join(cells) + " |"

    preset = (faces.get("training") or {}).get("preset") or "faces"
    v1_row = ([row(f"v1, the first shipped model (`faces` preset), latent "
                   f"{results['v1']['latent_dim']}", results["v1"]["reconstruction"])]
              if "v1" in results else [])
    refined_row = ([row(f"the same, codes refined {faces['refined']['steps']} steps",
                        faces["refined"]["reconstruction"])]
                   if "refined" in faces else [])
    return [
        "| model | PSNR (dB) | SSIM | PSNR 64×64 | SSIM 64×64 | sample SWD ×10³ | "
        "−ELBO (nats) | KL (nats) | active units | bits/dim | training |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        row(f"`{preset}` preset (shipped), latent {faces['latent_dim']}",
            faces["reconstruction"], faces["samples"]["swd"], faces),
        *refined_row,
        *v1_row,
        row(f"`seed` preset, latent {seed['latent_dim']}",
            seed["reconstruction"], seed["samples"]["swd"], seed),
        row(f"PCA, {faces['pca']['components']} components", faces["pca"]["reconstruction"],
            faces["pca"]["samples"]["swd"]),
        row(f"PCA, {seed['pca']['components']} components", seed["pca"]["reconstruction"],
            seed["pca"]["samples"]["swd"]),
    ]


def results_table(results, args):
    faces, seed = results["faces"], results["seed"]
    table = main_table(results)
    levels = " / ".join(f"{value:.1f}" for value in faces["samples"]["swd_levels"])
    floor = faces["real_vs_real"]
    floor_levels = " / ".join(f"{value:.1f}" for value in floor["swd_levels"])
    pca_levels = " / ".join(f"{value:.1f}" for value in faces["pca"]["samples"]["swd_levels"])
    seed_levels = " / ".join(f"{value:.1f}" for value in seed["samples"]["swd_levels"])
    pca_psnr = faces["pca"]["reconstruction"]["psnr"]
    psnr = faces["reconstruction"]["psnr"]
    targets = [
        ("reconstruction PSNR ≥ 24 dB", psnr >= 24.0, f"{psnr:.2f} dB"),
        (f"reconstruction PSNR ≥ PCA with {faces['pca']['components']} components",
         psnr >= pca_psnr, f"{psnr - pca_psnr:+.2f} dB; MSE {faces['reconstruction']['mse']:.5f} "
                           f"vs {faces['pca']['reconstruction']['mse']:.5f}"),
        ("sample SWD < PCA-Gaussian samples'", faces["samples"]["swd"] < faces["pca"]["samples"]["swd"],
         f"{faces['samples']['swd']:.1f} vs {faces['pca']['samples']['swd']:.1f}"),
        ("sample SWD < the `seed` preset's", faces["samples"]["swd"] < seed["samples"]["swd"],
         f"{faces['samples']['swd']:.1f} vs {seed['samples']['swd']:.1f}"),
    ]
    target_lines = [f"- {name}: **{'met' if met else 'not met'}** ({detail})"
                    for name, met, detail in targets]
    # Issue 14's targets need numbers that evaluations before it did not record.
    v2_lines = ([f"- {name}: **{'met' if met else 'not met'}** ({detail})"
                 for name, met, detail in v2_targets(results)]
                if "reconstruction_swd" in faces else ["- not evaluated yet: rerun this script"])
    gmm = faces.get("samples_gmm")
    gmm_line = ([f"Samples of the shipped model from the ex-post Gaussian mixture "
                 f"(`--sampler gmm`) instead of N(0, I): SWD **{gmm['swd']:.1f}**, "
                 f"{'lower' if gmm['swd'] < faces['samples']['swd'] else 'higher'} than the "
                 f"N(0, I) samples' {faces['samples']['swd']:.1f} "
                 f"(per level {' / '.join(f'{v:.1f}' for v in gmm['swd_levels'])})."]
                if gmm else [])
    return "\n".join([
        f"On {faces['images']} held-out images (`{args.data}`); PCA fitted on "
        f"{faces['pca']['fitted_on']} images of `{args.train_data}`. "
        f"SWD compares {faces['images'] // 2} samples with half of the held-out images; "
        f"the other half against it gives the real-vs-real floor, "
        f"**{floor['swd']:.1f}**. −ELBO, KL and bits/dim are per image with β = 1, on "
        f"dequantized pixels, IWAE with K = {faces['likelihood']['iwae_samples']}.",
        "", *table, "",
        f"SWD per pyramid level (128 / 64 / 32 / 16 px): shipped {levels}; seed preset "
        f"{seed_levels}; PCA-Gaussian {pca_levels}; real-vs-real {floor_levels}.",
        f"IWAE bound of the shipped model: {faces['likelihood']['iwae_nll']:,.0f} nats "
        f"({faces['likelihood']['bits_per_dim']:.3f} bits/dim).",
        *gmm_line,
        *v1_comparison(results),
        "",
        "Targets of the shipped model (issue 3):",
        *target_lines,
        "",
        "Targets of model v2 (issue 14):",
        *v2_lines,
        "",
        "Reproduce: `python scripts/results.py --data ../shared/faces/utkface/val "
        "--train-data ../shared/faces/utkface/train --celeba ../shared/faces/celeba_small`"
        + (f" ({results['seconds'] / 60:.0f} minutes on the machine that wrote this)"
           if "seconds" in results else "") + "; "
        "one model alone: `cvae evaluate --data ../shared/faces/utkface/val "
        "--train-data ../shared/faces/utkface/train`.",
    ])


def v1_comparison(results):
    """One line: v1's and the shipped model's reconstructions on each test set."""
    if "v1" not in results:
        return []
    parts = []
    for key, v1_key, label in (("faces", None, "utkface/val"),
                               ("faces_celeba", "celeba", "CelebA held out")):
        v1 = results["v1"]["reconstruction"] if v1_key is None else results["v1"].get(v1_key)
        if key not in results or v1 is None:
            continue
        now, pca = results[key]["reconstruction"], results[key]["pca"]["reconstruction"]
        refined = results[key].get("refined")
        refined = (f" (codes refined: {refined['reconstruction']['psnr']:.2f} / "
                   f"{refined['reconstruction']['ssim']:.3f})" if refined else "")
        parts.append(f"{label}: shipped {now['psnr']:.2f} dB / SSIM {now['ssim']:.3f}{refined}, v1 "
                     f"{v1['psnr']:.2f} / {v1['ssim']:.3f}, PCA {pca['psnr']:.2f} / "
                     f"{pca['ssim']:.3f}")
    return [f"Reconstructions against v1 and PCA ({'; '.join(parts)})."]


def v2_targets(results):
    """(name, met, detail) for issue 14's targets 1-3, from the evaluations."""
    faces = results["faces"]
    pca = faces["pca"]

    def levels(values):
        return " / ".join(f"{value:.0f}" for value in values)

    def below(entry, reference, share=0.75):
        return all(a <= share * b for a, b in zip(entry["swd_levels"], reference["swd_levels"]))

    targets = [
        ("default samples: the detector finds a face in ≥ 90%",
         faces["samples"]["face_rate"] >= 0.9,
         f"{100 * faces['samples']['face_rate']:.1f}%; real faces "
         f"{100 * faces['real_vs_real']['face_rate']:.1f}%, PCA-Gaussian "
         f"{100 * pca['samples']['face_rate']:.1f}%"),
        ("default samples' SWD ≥ 25% below PCA-Gaussian samples' at every level",
         below(faces["samples"], pca["samples"]),
         f"{levels(faces['samples']['swd_levels'])} vs {levels(pca['samples']['swd_levels'])}"),
        ("reconstructions' SWD ≥ 25% below PCA-Gaussian samples' at every level",
         below(faces["reconstruction_swd"], pca["samples"]),
         f"{levels(faces['reconstruction_swd']['swd_levels'])} vs "
         f"{levels(pca['samples']['swd_levels'])} (PCA's reconstructions "
         f"{levels(pca['reconstruction_swd']['swd_levels'])})"),
    ]
    if "refined" in faces:
        refined_swd = faces["refined"]["reconstruction_swd"]
        targets.append((f"the same, codes refined {faces['refined']['steps']} steps",
                        below(refined_swd, pca["samples"]),
                        f"{levels(refined_swd['swd_levels'])}"))
    for key, label in (("faces", "utkface/val"), ("faces_celeba", "CelebA held out")):
        if key not in results:
            continue
        entry = results[key]
        model_psnr, pca_psnr = entry["reconstruction"]["psnr"], entry["pca"]["reconstruction"]["psnr"]
        model_ssim, pca_ssim = entry["reconstruction"]["ssim"], entry["pca"]["reconstruction"]["ssim"]
        targets.append((f"{label}: PSNR ≥ PCA + 1.0 dB and SSIM above PCA's",
                        model_psnr >= pca_psnr + 1.0 and model_ssim > pca_ssim,
                        f"{model_psnr:.2f} vs {pca_psnr:.2f} dB, SSIM {model_ssim:.3f} vs "
                        f"{pca_ssim:.3f}"))
        if "refined" in entry:
            refined = entry["refined"]["reconstruction"]
            targets.append((f"the same, codes refined {entry['refined']['steps']} steps",
                            refined["psnr"] >= pca_psnr + 1.0 and refined["ssim"] > pca_ssim,
                            f"{refined['psnr']:.2f} vs {pca_psnr:.2f} dB, SSIM "
                            f"{refined['ssim']:.3f} vs {pca_ssim:.3f}"))
    return targets


if __name__ == "__main__":
    sys.exit(run_script(main))
