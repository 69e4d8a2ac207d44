#!/usr/bin/env python
"""Attribute vectors from UTKFace's labels, and edits along them.

UTKFace file names read `age_gender_race_date.jpg` (gender 0 = male, 1 =
female). This builds, with `cvae.sampling.exploration.attribute`:

  older   faces aged 55-80 minus faces aged 20-35
  female  female faces minus male faces (ages 20-60)

then edits faces along each vector at scales -2 .. 2 (0 = the plain
reconstruction). Dataset faces may not be published, so the committed figure
edits the public-domain astronaut and four faces the model generates (from
its ex-post mixture when saved beside it); pass
`--faces DIR` to edit held-out faces into a figure you keep to yourself.

Writes OUT/older.npy, OUT/female.npy (for `cvae edit --vector`) and
OUT/edits.png: a row per face and vector.

    python scripts/utkface_attributes.py --data ../shared/faces/utkface/train
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import REPOSITORY_ROOT, load_showcase_face

from cvae.atomic import atomic_path
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.data import datasets, image_files
from cvae.errors import run_script
from cvae.figures import image_grid, save_image
from cvae.model.saving import default_model_path, load_model
from cvae.sampling.exploration import attribute, edited
from cvae.sampling.samplers import mixture_beside, sample_latents

SCALES = (-2.0, -1.0, 0.0, 1.0, 2.0)
GROUPS = {
    "older": (lambda age, gender: 55 <= age <= 80, lambda age, gender: 20 <= age <= 35),
    "female": (lambda age, gender: gender == 1 and 20 <= age <= 60,
               lambda age, gender: gender == 0 and 20 <= age <= 60),
}


def utkface_labels(path):
    """(age, gender) from a UTKFace file name, or None when the name does not follow the scheme."""
    parts = Path(path).name.split("_")
    try:
        age, gender = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None
    return (age, gender) if gender in (0, 1) else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="UTKFace training folder")
    parser.add_argument("--model", help="a .keras model (default: the shipped model)")
    parser.add_argument("--per-group", type=positive_int, default=2000,
                        help="at most this many faces on each side of a vector")
    parser.add_argument("--faces", help="a folder of faces to edit (default: the astronaut "
                                        "and four generated faces)")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results/attributes"),
                        help="folder for the vectors and the figure")
    args = parser.parse_args(argv)

    model = load_model(args.model)
    size = model.config.image_size
    labelled = [(path, utkface_labels(path)) for path in image_files.list_image_files(args.data)]
    labelled = [(path, labels) for path, labels in labelled if labels is not None]
    print(f"{len(labelled)} labelled faces in {args.data}", flush=True)
    out = Path(args.out)
    vectors = {}
    for name, (is_positive, is_negative) in GROUPS.items():
        sides = []
        for belongs in (is_positive, is_negative):
            paths = [path for path, labels in labelled if belongs(*labels)]
            chosen = np.random.default_rng(0).permutation(len(paths))[:args.per_group]
            images, _ = image_files.load_images([paths[i] for i in sorted(chosen)], size)
            sides.append(images)
        vectors[name] = attribute(model, *sides)
        with atomic_path(out / f"{name}.npy") as temporary:
            np.save(temporary, vectors[name].astype(np.float32))
        print(f"{name}: {len(sides[0])} vs {len(sides[1])} faces, vector length "
              f"{np.linalg.norm(vectors[name]):.2f}", flush=True)

    if args.faces:
        faces, _ = datasets.read_dataset(args.faces, size)
        faces = faces[:6]
    else:
        astronaut = load_showcase_face(size=size)
        # Faces from the ex-post mixture when it exists: fewer prior holes than N(0, I).
        mixture = mixture_beside(args.model or default_model_path())
        generated = model.decode(sample_latents(model, 4, seed=1, mixture=mixture))
        faces = [astronaut] + list(generated)
    rows = [edited(model, face, vectors[name], SCALES) for face in faces for name in GROUPS]
    save_image(image_grid(rows), out / "edits.png")
    print(f"wrote {out / 'edits.png'}: rows alternate {' / '.join(GROUPS)}, "
          f"columns are scales {SCALES}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
