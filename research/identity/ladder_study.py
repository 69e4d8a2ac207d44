#!/usr/bin/env python
"""The rate ladder against the standard codecs: bytes, PSNR, SSIM and
whether each face is still the same person (cvae.evaluation.identity), at budgets from
about 50 to 400 bytes.

Two jobs:

  choose   candidate rungs of the detail layer (side x WebP quality) on the
           model's own held-out training share, never on a test set; prints
           the rungs on the Pareto front of bytes against identity distance
           (what cvae.codec.detail.RUNGS holds);
  compare  the ladder (`--max-bytes`) against the trivial thumbnail codec
           (the face shrunk to S x S, WebP, upscaled bicubically), and JPEG,
           WebP and AVIF at full size, on held-out sets; writes a JSON file,
           a markdown table and the identity-vs-bytes figure.

    python research/identity/ladder_study.py choose --data ../shared/faces/utkface/train
    python research/identity/ladder_study.py compare --data ../shared/faces/utkface/val \\
        --celeba ../shared/faces/celeba_small
"""

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from cvae.quiet import load_backend_quietly  # noqa: E402

load_backend_quietly()

from repository import CELEBA_HELD_OUT, load_showcase_face, replace_between_markers  # noqa: E402

from cvae.atomic import write_text  # noqa: E402
from cvae.cli.arguments import HelpFormatter, positive_floats, positive_int, positive_ints  # noqa: E402
from cvae.codec import detail, load_codec  # noqa: E402
from cvae.data import datasets, image_files
from cvae.errors import CvaeError, run_script  # noqa: E402
from cvae.evaluation import (
    identity,
    metrics,  # noqa: E402
)

BUDGETS = (48, 64, 96, 128, 160, 200, 256, 320, 400)
THUMBNAILS = tuple((side, quality) for side in (16, 24, 32, 48) for quality in (10, 30, 70))
FULL_SIZE = (("JPEG", 1), ("JPEG", 10), ("WEBP", 0), ("WEBP", 10), ("AVIF", 0), ("AVIF", 10))
CANDIDATE_RUNGS = tuple((side, quality) for side in (16, 24, 32, 48, 64)
                        for quality in (10, 20, 30, 50, 70, 90))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    jobs = parser.add_subparsers(dest="job", required=True)
    choose = jobs.add_parser("choose", formatter_class=HelpFormatter,
                             help="pick the detail layer's rungs on the training share")
    choose.add_argument("--data", required=True,
                        help="the model's training faces (its 5 %% held-out share is used)")
    choose.add_argument("--base-steps", type=positive_floats,
                        help="also try the code at these coarser steps under the detail "
                             "layer (default: the table's default step alone)")
    choose.add_argument("--sides", type=positive_ints, help="candidate sides (default: all)")
    choose.add_argument("--qualities", type=positive_ints,
                        help="candidate WebP qualities (default: all)")
    compare = jobs.add_parser("compare", formatter_class=HelpFormatter,
                              help="the ladder against the standard codecs on test sets")
    compare.add_argument("--data", required=True, help="held-out faces, e.g. utkface/val")
    compare.add_argument("--celeba", help="CelebA; its held-out tenth, aligned, is a second set")
    compare.add_argument("--out", default=str(ROOT / "research/identity/ladder.json"))
    compare.add_argument("--doc", default=str(ROOT / "docs/codec.md"),
                         help="document with an identity-ladder marked section ('' for none)")
    compare.add_argument("--figure", default=str(ROOT / "docs/results/identity_vs_bytes.png"))
    compare.add_argument("--faces-figure", default=str(ROOT / "docs/results/ladder_faces.png"))
    faces = jobs.add_parser("faces", formatter_class=HelpFormatter,
                            help="only the faces figure, of the public-domain demo face")
    faces.add_argument("--faces-figure", default=str(ROOT / "docs/results/ladder_faces.png"))
    for job in (choose, compare, faces):
        job.add_argument("--model", help="the model (default: the shipped one)")
        job.add_argument("--max-images", type=positive_int, default=200,
                         help="faces per set (the first, by file name)")
    args = parser.parse_args(argv)
    codec = load_codec(args.model)
    if codec.table is None:
        raise CvaeError("the model has no codec table: run `cvae calibrate` first")
    size = codec.config.image_size
    if args.job == "faces":
        _showcase_figure(codec, Path(args.faces_figure))
        return 0
    if args.job == "choose":
        _, faces = datasets.read_dataset(args.data, size, validation_fraction=0.05)
        candidates = [(side, quality) for side, quality in CANDIDATE_RUNGS
                      if (not args.sides or side in args.sides)
                      and (not args.qualities or quality in args.qualities)]
        return _choose(codec, faces[:args.max_images], candidates, args.base_steps or [None])
    sets = {"utkface/val": datasets.read_dataset(args.data, size)[0][:args.max_images]}
    if args.celeba:
        sets["CelebA held-out tenth"] = datasets.read_dataset(
            args.celeba, size, framing=image_files.Framing(align="on"),
            validation_fraction=CELEBA_HELD_OUT)[1][:args.max_images]
    results = {name: _compare(codec, faces, name) for name, faces in sets.items()}
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    table = "\n\n".join(_table(name, rows) for name, rows in results.items())
    print(table)
    if args.doc:
        replace_between_markers(Path(args.doc), "identity-ladder", table)
    _figure(results, Path(args.figure))
    _showcase_figure(codec, Path(args.faces_figure))
    return 0


def _showcase_figure(codec, path):
    # Dataset faces stay out of committed figures (their terms); the demo face is public domain.
    _faces_figure(codec, {"astronaut (public domain)": load_showcase_face()[None]}, path)


def _choose(codec, faces, candidates, base_steps):
    """Each candidate rung on top of the code (at the default step, or at
    each of `base_steps`); the Pareto front."""
    embeddings = identity.embed(faces)
    rows = []
    for step in base_steps:
        for side, quality in candidates:
            files, reconstructions = _detail_files(codec, faces, side, quality, step)
            label = f"{side}x{side} q{quality}" + (f", code step {step:g}" if step else "")
            rows.append(_row(label, faces, reconstructions, files, embeddings)
                        | {"side": side, "quality": quality, "step": step})
            print(json.dumps(rows[-1]), flush=True)
    front = [row for row in rows if not any(
        other["bytes"] <= row["bytes"] and other["distance"] < row["distance"] for other in rows)]
    front.sort(key=lambda row: row["bytes"])
    print("Pareto front (bytes, identity distance):")
    for row in front:
        print(f"  ({row['side']}, {row['quality']}), step {row['step']}: {row['bytes']:.1f} B, "
              f"distance {row['distance']:.3f}, match {100 * row['match']:.1f}%, "
              f"PSNR {row['psnr']:.2f} dB")
    return 0


def _detail_files(codec, faces, side, quality, step=None):
    saved = detail.RUNGS
    try:
        detail.RUNGS = ((side, quality),)
        files = codec.compress_batch(faces, mode="detail", step=step, rung=0)
    finally:
        detail.RUNGS = saved
    return files, codec.decompress_batch(files)


def _compare(codec, faces, name):
    print(f"{name}: {len(faces)} faces", flush=True)
    embeddings = identity.embed(faces)
    rows = []
    for budget in BUDGETS:
        files = codec.compress_batch(faces, max_bytes=budget)
        rows.append(_row(f"cvae --max-bytes {budget}", faces, codec.decompress_batch(files),
                         files, embeddings) | {"kind": "cvae"})
        print(json.dumps(rows[-1]), flush=True)
    for side, quality in THUMBNAILS:
        files = [_encode(_resize(face, side, Image.BOX), "WEBP", quality) for face in faces]
        decoded = np.stack([_resize(_decode(f), faces.shape[1], Image.BICUBIC) for f in files])
        rows.append(_row(f"thumbnail {side}x{side} WebP q{quality}", faces, decoded, files,
                         embeddings) | {"kind": "thumbnail"})
        print(json.dumps(rows[-1]), flush=True)
    for image_format, quality in FULL_SIZE:
        files = [_encode(face, image_format, quality) for face in faces]
        decoded = np.stack([_decode(f) for f in files])
        rows.append(_row(f"{image_format.replace('WEBP', 'WebP')} q{quality}", faces, decoded,
                         files, embeddings) | {"kind": "full size"})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _row(label, faces, reconstructions, files, embeddings):
    scores = identity.identity_metrics(faces, reconstructions, embeddings)
    return {"method": label, "bytes": float(np.mean([len(f) for f in files])),
            "largest": int(max(len(f) for f in files)),
            "psnr": float(np.mean(metrics.psnr(faces / 255.0, reconstructions / 255.0))),
            "ssim": float(np.mean(metrics.ssim(faces / 255.0, reconstructions / 255.0))),
            "match": scores["match"], "distance": scores["distance"], "images": len(faces)}


def _encode(image, image_format, quality):
    buffer = io.BytesIO()
    options = {"method": 6} if image_format == "WEBP" else {}
    Image.fromarray(image).save(buffer, image_format, quality=quality, **options)
    return buffer.getvalue()


def _decode(content):
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def _resize(image, side, resample):
    return np.asarray(Image.fromarray(image).resize((side, side), resample))


def _table(name, rows):
    lines = [f"On {name}, the first {rows[0]['images']} faces by file name "
             f"(`research/identity/ladder_study.py compare`):", "",
             "| method | bytes (mean) | largest | PSNR (dB) | SSIM | same person | identity distance |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['bytes']:.1f} | {row['largest']} | "
                     f"{row['psnr']:.2f} | {row['ssim']:.3f} | {100 * row['match']:.1f}% | "
                     f"{row['distance']:.3f} |")
    return "\n".join(lines)


# The faces figure's columns: the default file, then two budgets.
FACE_BUDGETS = (None, 160, 256)


def _faces_figure(codec, faces, path):
    """Each face, then its decoded files at FACE_BUDGETS, with bytes and the
    identity judge's distance under each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(faces), 1 + len(FACE_BUDGETS),
                                figsize=(2.2 * (1 + len(FACE_BUDGETS)), 2.5 * len(faces)),
                                squeeze=False)
    for row, (name, face) in zip(axes, faces.items()):
        row[0].imshow(face[0])
        row[0].set_title(name, fontsize=7)
        for axis, budget in zip(row[1:], FACE_BUDGETS):
            files = (codec.compress_batch(face) if budget is None
                     else codec.compress_batch(face, max_bytes=budget))
            decoded = codec.decompress_batch(files)
            distance = float(identity.distances(face, decoded)[0])
            axis.imshow(decoded[0])
            label = "default" if budget is None else f"--max-bytes {budget}"
            verdict = "same" if distance < identity.SAME_PERSON_DISTANCE else "other"
            axis.set_title(f"{label}: {len(files[0])} B\ndistance {distance:.2f} ({verdict})",
                           fontsize=7)
        for axis in row:
            axis.axis("off")
    figure.tight_layout()
    from cvae.atomic import atomic_path

    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def _figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for axis, (name, rows) in zip(axes[0], results.items()):
        for kind, style in (("cvae", "o-"), ("thumbnail", "."), ("full size", "s")):
            chosen = sorted((row for row in rows if row["kind"] == kind), key=lambda r: r["bytes"])
            axis.plot([r["bytes"] for r in chosen], [100 * r["match"] for r in chosen], style,
                      label={"cvae": "cvae, --max-bytes", "thumbnail": "thumbnail + WebP",
                             "full size": "JPEG / WebP / AVIF, full size"}[kind])
        axis.set_xscale("log")
        axis.set_xlim(40, 1500)
        axis.set_xlabel("bytes per face")
        axis.set_ylabel("same person (%)")
        axis.set_title(name)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    from cvae.atomic import atomic_path

    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(run_script(main))
