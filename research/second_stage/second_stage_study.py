#!/usr/bin/env python
"""Compare second stages (`cvae.model.second_stage`) on one first stage's codes:
how many training codes, how wide, how long; whether N(0, I) noise is
mapped onto the second stage's fitted q(u), whether its own Gaussian noise
is added when sampling, and whether the drawn codes are rescaled to spread
like the training codes (per dimension, or with their whole covariance).

Each variant is trained on the same first stage's codes of training images,
and its default samples are scored as `scripts/results.py` scores the
shipped model's: SWD (x1e3, per pyramid level, finest first) of as many
samples as half the held-out images against the other half, and the
detector's face rate. Two references bound what a second stage can do with
this decoder: the decoded codes of other training faces (an exact sampler of
the training codes), and the raw N(0, I) prior. Beside them, the same
training faces themselves, and with more than one --data source each
source's real faces and decoded codes apart: the held-out faces come from
one source, so these say how much of a sampler's distance at each level is
the training mixture's own.

Writes docs/results/second_stage_study.json and the table in
research/model/notebook.md between the "second-stage" markers. Variants measured
before on the same first stage (by its weights' hash) stay in both, so the
study can be run a few variants at a time.

    python research/second_stage/second_stage_study.py --model /tmp/first-stage.keras \\
        --data ../shared/faces/utkface/train --data runs/celeba-train-aligned.npy \\
        --val-data ../shared/faces/utkface/val
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import numpy as np

# The studies share the document-writing helpers of scripts/repository.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import REPOSITORY_ROOT, replace_between_markers, reproduce_command

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, add_measuring_precision
from cvae.data import datasets
from cvae.errors import CvaeError, run_script
from cvae.evaluation.evaluate import samples_entry, split_halves
from cvae.model.saving import load_model, weights_sha256
from cvae.model.second_stage import (
    DEFAULT_UNITS,
    drawn_codes,
    train_second_stage,
    with_second_stage,
)
from cvae.sampling.samplers import sample_latents


class Variant(NamedTuple):
    per_source: Optional[int] = None  # codes of each --data source (None: all)
    units: Tuple[int, ...] = DEFAULT_UNITS  # hidden widths
    epochs: int = 100
    kl_weight: float = 1.0  # the second stage's own beta
    match_moments: bool = False  # eps ~ N(0, I) mapped onto q(u)'s fitted Gaussian
    with_noise: bool = False  # sampled with the second stage's own Gaussian noise
    match_codes: bool = False  # drawn codes rescaled to the training codes' mean and variance
    match_covariance: bool = False  # ... or mapped onto their mean and whole covariance
    # Also the codes of every training face mirrored left-right: the first
    # stage trained on random flips, so these are codes it knows too.
    mirrored: bool = False

    def training(self):
        """What the trained second stage depends on: variants that differ
        only in how they sample share one run."""
        return self._replace(match_moments=False, with_noise=False, match_codes=False,
                             match_covariance=False)


VARIANTS = {
    "5000 codes per source": Variant(per_source=5000),
    "all codes": Variant(),
    "all codes deeper": Variant(units=(1024, 1024, 1024)),
    "all codes + q(u) matched": Variant(match_moments=True),
    "all codes + its noise": Variant(with_noise=True),
    "all codes + q(u) matched + its noise": Variant(match_moments=True, with_noise=True),
    "all codes KL 0.5 + q(u) matched": Variant(kl_weight=0.5, match_moments=True),
    # The session-10 to session-16 models'.
    "all codes KL 0.5 + q(u) matched + its noise": Variant(kl_weight=0.5, match_moments=True,
                                                           with_noise=True),
    # The shipped model's (the defaults of `cvae.model.second_stage`).
    "all codes KL 0.5 + q(u) matched + its noise + codes' spread matched": Variant(
        kl_weight=0.5, match_moments=True, with_noise=True, match_codes=True),
    "all codes and their mirror images KL 0.5 + q(u) matched + its noise + codes' spread "
    "matched": Variant(kl_weight=0.5, match_moments=True, with_noise=True, match_codes=True,
                       mirrored=True),
    "all codes KL 0.5 + q(u) matched + its noise + codes' covariance matched": Variant(
        kl_weight=0.5, match_moments=True, with_noise=True, match_covariance=True),
    "all codes KL 0.25 + q(u) matched + its noise": Variant(kl_weight=0.25, match_moments=True,
                                                            with_noise=True),
    "all codes KL 0.5 wider + q(u) matched + its noise": Variant(units=(2048, 2048),
                                                                 kl_weight=0.5,
                                                                 match_moments=True,
                                                                 with_noise=True),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="the first stage (a .keras model)")
    parser.add_argument("--data", required=True, action="append",
                        help="training images (folder or .npy/.npz), repeatable")
    parser.add_argument("--val-data", required=True, help="held-out images (utkface/val)")
    add_measuring_precision(parser)
    parser.add_argument("--variants", help="comma-separated names of VARIANTS to run "
                                           "(default: all)")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for second_stage_study.json")
    parser.add_argument("--marker", default="second-stage",
                        help="the section of research/model/notebook.md that the table replaces")
    args = parser.parse_args(argv)
    names = list(VARIANTS)
    chosen = args.variants.split(",") if args.variants else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise CvaeError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(names)}")

    model = load_model(args.model)
    saved_precision = model.dtype_policy.name
    if args.precision:
        model = load_model(args.model, precision=args.precision)
    # Rows are merged with an earlier run's only if it studied this first
    # stage in the same precision.
    model_sha256 = weights_sha256(model)
    precision = model.dtype_policy.name
    size = model.config.image_size
    held_out, _ = datasets.read_dataset(args.val_data, size)
    reference, _ = split_halves(held_out.astype(np.float32) / 255.0)
    count = len(reference)
    mirroring = any(VARIANTS[name].mirrored for name in chosen)
    codes, mirrored_codes, training_faces = [], [], []
    for source in args.data:
        images, _ = datasets.read_dataset(source, size)
        print(f"encoding {len(images)} images of {source}", flush=True)
        codes.append(model.encode(images))
        if mirroring:
            mirrored_codes.append(model.encode(images[:, :, ::-1]))
        training_faces.append(images)

    def score(samples, **details):
        return {**details, **samples_entry(reference, samples, 0)}

    def real(images):
        return images.astype(np.float32) / 255.0

    rows = []
    # The same faces twice, real and decoded: random_subset's choice depends
    # only on the length, the count and the seed.
    every_face = np.concatenate(training_faces)
    every_code = np.concatenate([z_mean for z_mean, _ in codes])
    rows.append(score(real(datasets.random_subset(every_face, count, seed=1)),
                      name="reference: real training faces"))
    rows.append(score(model.decode(datasets.random_subset(every_code, count, seed=1)),
                      name="reference: decoded codes of other training faces"))
    del every_face
    if len(args.data) > 1:
        for source, images, (z_mean, _) in zip(args.data, training_faces, codes):
            rows.append(score(real(datasets.random_subset(images, count, seed=1)),
                              name=f"reference: real training faces of `{source}`"))
            rows.append(score(model.decode(datasets.random_subset(z_mean, count, seed=1)),
                              name=f"reference: decoded codes of training faces of `{source}`"))
    del training_faces
    rows.append(score(model.generate(count, seed=0, sampler="prior"),
                      name="reference: the raw N(0, I) prior"))
    if model.second_stage_decoder is not None:
        rows.append(score(model.generate(count, seed=0),
                          name=f"reference: the second stage inside `{Path(args.model).name}`"))
    trained_runs = {}
    for name in chosen:
        variant = VARIANTS[name]
        subsets = [tuple(_subset(part, variant.per_source) for part in source_codes)
                   for source_codes in codes + (mirrored_codes if variant.mirrored else [])]
        z_mean = np.concatenate([z for z, _ in subsets])
        z_log_var = np.concatenate([v for _, v in subsets])
        key = variant.training()
        if key not in trained_runs:
            print(f"{name}: {len(z_mean)} codes, {variant}", flush=True)
            started = time.perf_counter()
            trained = train_second_stage(z_mean, z_log_var, units=variant.units,
                                         epochs=variant.epochs, kl_weight=variant.kl_weight)
            trained_runs[key] = (trained, time.perf_counter() - started)
        trained, seconds = trained_runs[key]
        combined = with_second_stage(model, trained, variant.match_moments, variant.with_noise,
                                     variant.match_codes and not variant.match_covariance)
        if variant.match_covariance:
            combined.second_stage_decoder.set_weights(matched_to_code_covariance(
                trained.units, trained.decoder_weights(variant.match_moments),
                trained.code_mean, trained.code_covariance, combined.config.second_stage_noise))
        codes_drawn = sample_latents(combined, count, seed=0)
        rows.append(score(combined.decode(codes_drawn), name=name, codes=len(z_mean),
                          units=list(variant.units), epochs=variant.epochs, seconds=seconds,
                          match_moments=variant.match_moments, with_noise=variant.with_noise,
                          match_codes=variant.match_codes,
                          match_covariance=variant.match_covariance,
                          scale=trained.scale,
                          code_variance=float(codes_drawn.var(axis=0).mean()),
                          training_code_variance=float(z_mean.var(axis=0).mean())))
        print(_row(rows[-1]), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = _merged(out / "second_stage_study.json", model_sha256, precision, saved_precision,
                   rows)
    write_text(out / "second_stage_study.json",
               json.dumps({"first_stage_sha256": model_sha256, "precision": precision,
                           "rows": rows}, indent=2) + "\n")
    table = "\n".join([
        f"On `{args.val_data}`: {count} samples of each against half of the held-out "
        f"faces; first stage `{Path(args.model).name}` computing in {precision}.",
        "",
        "| sampler | codes | hidden widths | epochs | training (min) | code variance | "
        "face rate | SWD ×10³, 128 / 64 / 32 / 16 px |",
        "|---|---|---|---|---|---|---|---|",
        *[_row(row) for row in rows],
        "",
        f"Reproduce: `{reproduce_command(__file__, argv)}`.",
    ])
    replace_between_markers(REPOSITORY_ROOT / "research/model/notebook.md", args.marker, table)
    print(table)
    return 0


def _merged(path, model_sha256, precision, saved_precision, rows):
    """The rows of an earlier run on the same first stage in the same
    precision that this run did not measure again (in the order VARIANTS
    lists them), with this run's."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return rows
    if (not isinstance(earlier, dict) or earlier.get("first_stage_sha256") != model_sha256
            # Files written before the precision was recorded were measured as saved.
            or earlier.get("precision", saved_precision) != precision):
        return rows
    measured = {row["name"] for row in rows}
    kept = [row for row in earlier["rows"] if row["name"] not in measured]
    references = [row for row in rows + kept if row["name"].startswith("reference")]
    order = {name: index for index, name in enumerate(VARIANTS)}
    variants = sorted((row for row in rows + kept if row["name"] in order),
                      key=lambda row: order[row["name"]])
    return references + variants


def _subset(array, count):
    # The same rows of z_mean and z_log_var: random_subset's choice depends
    # only on the length, the count and the seed.
    return datasets.random_subset(array, count, seed=0)


def _row(row):
    levels = " / ".join(f"{value:.0f}" for value in row["swd_levels"])
    minutes = f"{row['seconds'] / 60:.1f}" if "seconds" in row else "-"
    units = ", ".join(map(str, row["units"])) if "units" in row else "-"
    # The drawn codes' variance (mean over dimensions) against the training codes'.
    variance = (f"{row['code_variance']:.2f} of {row['training_code_variance']:.2f}"
                if "code_variance" in row else "-")
    return (f"| {row['name']} | {row.get('codes', '-')} | {units} | {row.get('epochs', '-')} | "
            f"{minutes} | {variance} | {100 * row['face_rate']:.1f}% | {levels} |")


# --- matching the codes' whole covariance (studied, not shipped) ----------------

def matched_to_code_covariance(units, weights, code_mean, code_covariance, noise, seed=0):
    """A decoder's weights with its last layer mapped so that its codes of
    eps ~ N(0, I), with Gaussian noise of spread `noise` added, have the
    training codes' mean and whole covariance.

    `cvae.model.second_stage._matched_to_codes` (shipped) gives each dimension its variance but leaves the
    correlations between dimensions as the second stage drew them. The map
    here is the optimal-transport map between the two Gaussians (the affine
    map that moves codes least while giving them the target covariance):
    z -> A (z - m) + mean, A = S^-1/2 (S^1/2 T S^1/2)^1/2 S^-1/2, with S the
    drawn codes' covariance and T the training codes' less the noise's."""
    drawn = drawn_codes(units, weights, seed)
    *hidden, kernel, bias = weights
    target = np.asarray(code_covariance, np.float64) - noise ** 2 * np.eye(len(code_covariance))
    drawn_root, drawn_inverse_root = _square_roots(np.cov(drawn, rowvar=False))
    target_root, _ = _square_roots(drawn_root @ target @ drawn_root)
    transport = drawn_inverse_root @ target_root @ drawn_inverse_root  # symmetric
    return [*hidden, (kernel @ transport).astype(np.float32),
            ((bias - drawn.mean(axis=0)) @ transport + code_mean).astype(np.float32)]


def _square_roots(matrix, floor=1e-9):
    """The symmetric square root of a covariance matrix and its inverse
    (eigenvalues below `floor`, rounding's negatives among them, raised to it)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    roots = np.sqrt(np.maximum(values, floor))
    return (vectors * roots) @ vectors.T, (vectors / roots) @ vectors.T


if __name__ == "__main__":
    sys.exit(run_script(main))

