#!/usr/bin/env python
"""Score the identity study's trained candidates side by side: each model's
own reconstructions (the unquantized code, what every rung of the ladder
builds on) on held-out faces, by PSNR, SSIM and the identity judge.

    python research/identity/candidates.py --data ../shared/faces/utkface/val \\
        --celeba ../shared/faces/celeba_small \\
        --model shipped=saved_models/cvae-faces.keras \\
        --model control=runs/identity-control/model.keras \\
        --model face-weight-2=runs/identity-face-weight-2/model.keras
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from cvae.quiet import load_backend_quietly  # noqa: E402

load_backend_quietly()

from repository import CELEBA_HELD_OUT, replace_between_markers  # noqa: E402

from cvae.atomic import write_text  # noqa: E402
from cvae.cli.arguments import HelpFormatter, positive_int  # noqa: E402
from cvae.data import datasets, image_files
from cvae.errors import CvaeError, run_script  # noqa: E402
from cvae.evaluation import (
    identity,
    metrics,  # noqa: E402
)
from cvae.model.saving import load_model  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="held-out faces, e.g. utkface/val")
    parser.add_argument("--celeba", help="CelebA; its held-out tenth, aligned, is a second set")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="a candidate (repeat)")
    parser.add_argument("--max-images", type=positive_int, default=300,
                        help="faces per set (the first, by file name)")
    parser.add_argument("--out", default=str(ROOT / "research/identity/candidates.json"))
    parser.add_argument("--add", action="store_true",
                        help="keep --out's other candidates: score only these, then write the "
                             "table of all (the same sets and --max-images)")
    parser.add_argument("--doc", default=str(ROOT / "research/identity/README.md"),
                        help="document with an identity-candidates marked section ('' for none)")
    args = parser.parse_args(argv)
    models = {}
    for entry in args.model:
        name, _, path = entry.partition("=")
        if not path or not Path(path).is_file():
            raise CvaeError(f"--model {entry}: expected NAME=PATH to a .keras file")
        models[name] = path
    sets = {"utkface/val": datasets.read_dataset(args.data, 128)[0][:args.max_images]}
    if args.celeba:
        sets["CelebA held-out tenth"] = datasets.read_dataset(
            args.celeba, 128, framing=image_files.Framing(align="on"),
            validation_fraction=CELEBA_HELD_OUT)[1][:args.max_images]
    embeddings = {name: identity.embed(faces) for name, faces in sets.items()}
    rows = []
    if args.add and Path(args.out).is_file():
        rows = [row for row in json.loads(Path(args.out).read_text())
                if row["model"] not in models]
        if any(row["set"] not in sets or row["images"] != len(sets[row["set"]])
               for row in rows):
            raise CvaeError(f"{args.out} was scored on other sets or --max-images; rerun it "
                            f"whole")
    for name, path in models.items():
        model = load_model(path, precision="float32")
        for set_name, faces in sets.items():
            reconstructions = model.reconstruct(faces)
            scores = identity.identity_metrics(faces, reconstructions, embeddings[set_name])
            rows.append({"model": name, "path": path, "set": set_name, "images": len(faces),
                         "psnr": float(np.mean(metrics.psnr(faces / 255.0, reconstructions))),
                         "ssim": float(np.mean(metrics.ssim(faces / 255.0, reconstructions))),
                         "match": scores["match"], "distance": scores["distance"]})
            print(json.dumps(rows[-1]), flush=True)
    write_text(args.out, json.dumps(rows, indent=2) + "\n")
    lines = ["| candidate | set | faces | PSNR (dB) | SSIM | same person | identity distance |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['set']} | {row['images']} | {row['psnr']:.2f} | "
                     f"{row['ssim']:.3f} | {100 * row['match']:.1f}% | {row['distance']:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.doc:
        replace_between_markers(Path(args.doc), "identity-candidates", table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
