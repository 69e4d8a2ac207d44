#!/usr/bin/env python
"""How precise is one SWD measurement? The spread of each pyramid level over
repeated draws, for real faces and for the sets results.py scores.

results.py measures the SWD once: 491 samples against one half of the 982
held-out faces, patch positions and directions from seed 0. Here the same
measurement is repeated with seeds 0 .. R-1, each repeat drawing a new split
of the held-out faces into reference and other half, new samples and new
patches, and each row reports the smallest, median and largest value per
level (x1e3, finest first):

- real-vs-real: the other half against the reference (the floor);
- training faces: as many random training faces as the reference holds;
- with --mixture-data, the same from every source the model was trained on
  (--train-data and these, in their proportions): what a perfect sampler
  of its training distribution would score;
- PCA-Gaussian: samples of PCA fitted on training faces (as results.py);
- the model's default samples, and its reconstructions of the other half.

Writes docs/results/swd_spread.json and the table in docs/evaluation.md
between the "swd-spread" markers.

    python research/metrics/swd_spread.py --data ../shared/faces/utkface/val \\
        --train-data ../shared/faces/utkface/train
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

from repository import REPOSITORY_ROOT, replace_between_markers, reproduce_command

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, add_measuring_precision, positive_int
from cvae.data import datasets
from cvae.errors import run_script
from cvae.evaluation.evaluate import fit_pca, split_halves, swd_entry
from cvae.model.saving import DEFAULT_MODEL_PATH, load_model

ROWS = {"real_vs_real": "real-vs-real (the other half)",
        "training_faces": "real training faces",
        "training_mixture": "real training faces, every source",
        "pca_gaussian": "PCA-Gaussian samples",
        "model_samples": "the model's default samples",
        "model_reconstructions": "the model's reconstructions of the other half"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="held-out images (utkface/val)")
    parser.add_argument("--train-data", required=True,
                        help="training images, for PCA and the training-faces row")
    parser.add_argument("--mixture-data", action="append", default=[],
                        help="the model's other training sources (repeatable), for the "
                             "training-mixture row")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="a .keras model")
    add_measuring_precision(parser)
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="measurements per row, with seeds 0 .. REPEATS-1")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for swd_spread.json")
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "docs/evaluation.md"),
                        help="document whose swd-spread section is rewritten")
    args = parser.parse_args(argv)

    started = time.monotonic()
    model = load_model(args.model, precision=args.precision)
    size = model.config.image_size
    images, _ = datasets.read_dataset(args.data, size)
    train_images, _ = datasets.read_dataset(args.train_data, size)
    pca = fit_pca(train_images, model.config.latent_dim)
    mixture = (np.concatenate([train_images] + [datasets.read_dataset(source, size)[0]
                                                for source in args.mixture_data])
               if args.mixture_data else None)
    originals = images.astype(np.float32) / 255.0
    reconstructions = model.reconstruct(images)
    # In ROWS's order, which the table keeps.
    levels = {name: [] for name in ROWS if name != "training_mixture" or mixture is not None}
    for seed in range(args.repeats):
        print(f"repeat {seed + 1} of {args.repeats}", file=sys.stderr, flush=True)
        reference, other = split_halves(originals, seed)
        half = len(reference)
        sets = {"real_vs_real": other,
                "training_faces": _drawn(train_images, half, seed),
                "pca_gaussian": pca.sample(half, seed=seed),
                "model_samples": model.generate(half, seed=seed),
                "model_reconstructions": split_halves(reconstructions, seed)[1]}
        if mixture is not None:
            sets["training_mixture"] = _drawn(mixture, half, seed)
        for name, candidate in sets.items():
            levels[name].append(swd_entry(reference, candidate, seed)["swd_levels"])

    result = {"model": Path(args.model).name, "precision": model.dtype_policy.name,
              "data": args.data, "train_data": args.train_data,
              "mixture_data": args.mixture_data,
              "images": len(images), "repeats": args.repeats, "levels": levels,
              "minutes": round((time.monotonic() - started) / 60, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "swd_spread.json", json.dumps(result, indent=2) + "\n")
    replace_between_markers(args.doc, "swd-spread", _table(result, argv))
    print(_table(result, argv))
    return 0


def _drawn(images, count, seed):
    """`count` of `images` drawn at random by `seed` (as the library draws a
    subset), as floats in [0, 1]."""
    return datasets.random_subset(images, count, seed).astype(np.float32) / 255.0


def _table(result, argv):
    rows = [f"On `{result['data']}` ({result['images']} images), {result['repeats']} repeats "
            f"of results.py's SWD measurement, each with its own split into reference and "
            f"other half, its own samples and patches; model `{result['model']}` "
            f"computing in {result['precision']}. Smallest "
            f"/ median / largest value of each level (SWD ×10³):",
            "",
            "| set | 128 px | 64 px | 32 px | 16 px |",
            "|---|---|---|---|---|"]
    for name in result["levels"]:
        per_level = np.array(result["levels"][name])
        cells = [" / ".join(f"{value:.0f}" for value in
                            (column.min(), np.median(column), column.max()))
                 for column in per_level.T]
        rows.append(f"| {ROWS[name]} | " + " | ".join(cells) + " |")
    command = reproduce_command(__file__, argv)
    rows += ["", f"Reproduce: `{command}` ({result['minutes']:g} minutes)."]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(run_script(main))
