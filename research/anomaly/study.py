#!/usr/bin/env python
"""Which anomaly score tells faces from non-faces? Each candidate of
cvae.anomaly against the others: ROC AUC on held-out faces against non-faces
made from what the repository has, and the false-alarm and miss rates at
each score's threshold (set at 5 % false alarms on the model's own held-out
training share, never on these sets).

Non-faces: corners of CelebA photos (hair, background, clothes), crops of the
demo photo away from its face, plain and gradient images, noise, stripes and
checks. Faces: utkface/val and CelebA's held-out tenth.

    python research/anomaly/study.py --data ../shared/faces/utkface/val \\
        --train-data ../shared/faces/utkface/train --celeba ../shared/faces/celeba_small
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from cvae.quiet import load_backend_quietly  # noqa: E402

load_backend_quietly()

from repository import CELEBA_HELD_OUT, SHOWCASE_IMAGE, replace_between_markers  # noqa: E402

from cvae import anomaly
from cvae.atomic import write_text  # noqa: E402
from cvae.cli.arguments import HelpFormatter, positive_int  # noqa: E402
from cvae.data import (
    datasets,
    image_files,  # noqa: E402
)
from cvae.errors import run_script  # noqa: E402
from cvae.model.saving import load_model  # noqa: E402

SIZE = 128


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="held-out faces, e.g. utkface/val")
    parser.add_argument("--train-data", required=True,
                        help="the model's training faces: its codes' Gaussian, and its 5 %% "
                             "held-out share for the thresholds")
    parser.add_argument("--celeba", required=True, help="CelebA: faces and non-face corners")
    parser.add_argument("--model", help="the model (default: the shipped one)")
    parser.add_argument("--max-images", type=positive_int, default=300, help="faces per set")
    parser.add_argument("--out", default=str(ROOT / "research/anomaly/study.json"))
    parser.add_argument("--doc", default=str(ROOT / "docs/anomaly.md"),
                        help="document with an anomaly-scores marked section ('' for none)")
    args = parser.parse_args(argv)
    model = load_model(args.model, precision="float32")
    train, held_out = datasets.read_dataset(args.train_data, SIZE, validation_fraction=0.05)
    rng = np.random.default_rng(0)
    training = train[rng.choice(len(train), min(3000, len(train)), replace=False)]
    scorer = anomaly.calibrate_scorer(model, training, held_out[:args.max_images])
    thresholds = {}
    held_out_terms = anomaly.score_terms(model, held_out[:args.max_images], scorer.likelihood,
                                         scorer.scale, scorer.code_mean, scorer.code_precision)
    for name, values in held_out_terms.items():
        thresholds[name] = float(np.quantile(values, 1.0 - anomaly.FALSE_ALARM_RATE))

    celeba_photos = [np.asarray(Image.open(path).convert("RGB"))
                     for path in sorted(Path(args.celeba).glob("*.jpg"))[:args.max_images]]
    faces = {"utkface/val": datasets.read_dataset(args.data, SIZE)[0][:args.max_images],
             "CelebA held-out tenth": datasets.read_dataset(
                 args.celeba, SIZE, framing=image_files.Framing(align="on"),
                 validation_fraction=CELEBA_HELD_OUT)[1][:args.max_images]}
    non_faces = {"CelebA photo corners": _corners(celeba_photos),
                 "demo photo away from the face": _away_from_face(rng),
                 "plain colours": _plain(rng, 60),
                 "gradients": _gradients(rng, 60),
                 "noise": _noise(rng, 60),
                 "stripes and checks": _patterns(rng, 60)}
    started = time.perf_counter()
    terms = {name: anomaly.score_terms(model, images, scorer.likelihood, scorer.scale,
                                       scorer.code_mean, scorer.code_precision)
             for name, images in {**faces, **non_faces}.items()}
    scored = sum(len(images) for images in {**faces, **non_faces}.values())
    rate = scored / (time.perf_counter() - started)
    rows = []
    for score in anomaly.SCORES:
        face_values = np.concatenate([terms[name][score] for name in faces])
        other_values = np.concatenate([terms[name][score] for name in non_faces])
        row = {"score": score, "auc": anomaly.roc_auc(other_values, face_values),
               "threshold": thresholds[score],
               "false_alarms": float(np.mean(face_values > thresholds[score])),
               "misses": float(np.mean(other_values <= thresholds[score])),
               "auc_by_set": {name: anomaly.roc_auc(terms[name][score], face_values)
                              for name in non_faces}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"images_per_second": rate, "cores": len(os.sched_getaffinity(0)),
              "faces": {name: len(images) for name, images in faces.items()},
              "non_faces": {name: len(images) for name, images in non_faces.items()},
              "rows": rows}
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    table = _table(result)
    print(table)
    if args.doc:
        replace_between_markers(Path(args.doc), "anomaly-scores", table)
    return 0


def _table(result):
    names = list(result["non_faces"])
    lines = [f"Faces: {', '.join(f'{n} ({c})' for n, c in result['faces'].items())}. Non-faces: "
             f"{', '.join(f'{n} ({c})' for n, c in result['non_faces'].items())}. Thresholds "
             f"at 5 % false alarms on the model's held-out training share "
             f"(`research/anomaly/study.py`; every score at once, "
             f"{result['images_per_second']:.0f} images/s on {result['cores']} core(s), batches "
             f"of 64, the model in float32):", "",
             "| score | ROC AUC | false alarms on faces | non-faces missed | "
             + " | ".join(f"AUC: {name}" for name in names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for row in result["rows"]:
        lines.append(f"| `{row['score']}` | {row['auc']:.3f} | {100 * row['false_alarms']:.1f}% | "
                     f"{100 * row['misses']:.1f}% | "
                     + " | ".join(f"{row['auc_by_set'][name]:.3f}" for name in names) + " |")
    return "\n".join(lines)


def _resized(array):
    return np.asarray(Image.fromarray(array).resize((SIZE, SIZE), Image.LANCZOS))


def _corners(photos):
    """A 36 x 36 corner of each side of each photo: hair, background, clothes."""
    crops = []
    for photo in photos:
        height, width = photo.shape[:2]
        for top, left in ((0, 0), (0, width - 36), (height - 36, 0), (height - 36, width - 36)):
            crops.append(_resized(photo[top:top + 36, left:left + 36]))
    return np.stack(crops)


def _away_from_face(rng, count=60):
    photo = np.asarray(Image.open(SHOWCASE_IMAGE).convert("RGB"))
    # The astronaut's face lies within x 150..290, y 30..190 of the 512 x 512 photo.
    crops = []
    while len(crops) < count:
        side = int(rng.integers(64, 200))
        left, top = (int(v) for v in rng.integers(0, 512 - side, 2))
        if left < 290 and left + side > 150 and top < 190 and top + side > 30:
            continue
        crops.append(_resized(photo[top:top + side, left:left + side]))
    return np.stack(crops)


def _plain(rng, count):
    colours = np.concatenate([[[255, 255, 255], [240, 240, 240], [128, 128, 128], [0, 0, 0]],
                              rng.integers(0, 256, (count - 4, 3))])
    return np.broadcast_to(colours[:, None, None, :], (count, SIZE, SIZE, 3)).astype(np.uint8)


def _gradients(rng, count):
    ramp = np.linspace(0.0, 1.0, SIZE)
    images = []
    for _ in range(count):
        start, end = rng.integers(0, 256, (2, 3))
        along = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
        mix = np.broadcast_to(along, (SIZE, SIZE))[..., None]
        images.append((start + (end - start) * mix).astype(np.uint8))
    return np.stack(images)


def _noise(rng, count):
    return rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def _patterns(rng, count):
    images = []
    coordinates = np.arange(SIZE)
    for index in range(count):
        period = int(rng.integers(4, 33))
        if index % 2:
            pattern = ((coordinates[:, None] // period + coordinates[None, :] // period) % 2)
        else:
            pattern = np.broadcast_to((coordinates // period % 2)[None, :], (SIZE, SIZE))
        low, high = rng.integers(0, 256, (2, 3))
        images.append((low + (high - low) * pattern[..., None]).astype(np.uint8))
    return np.stack(images)


if __name__ == "__main__":
    sys.exit(run_script(main))
