#!/usr/bin/env python
"""The alignment figure (docs/alignment.md): a public-domain photo compressed with and
without face alignment.

For each photo (default: the astronaut in data/): the centred-square crop
(`--align off`, what every command did before) and the aligned crop
(`--align on`), each compressed to a `.cvae` file with the model's default
mode and decoded. Reports bytes, PSNR and SSIM of each reconstruction
against its own crop, and whether the stock face detector finds a face in
it; draws crop | reconstruction for both, and the aligned reconstruction
pasted back into the photo (`cvae decompress --paste-into`).

With --data DIR it also measures a folder of photos the same way (all of
them, or --max-images chosen at random): the share of reconstructions in
which the detector finds a face, and the mean PSNR, for both crops. Photos
in which --align on finds no face count as failures of the aligned path.

Writes docs/results/alignment.png, docs/results/alignment.json and the
docs/alignment.md between the "alignment" markers (and "alignment-folder" with --data).

    python scripts/alignment_showcase.py --data ../shared/faces/celeba_small --max-images 1000
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import REPOSITORY_ROOT, SHOWCASE_IMAGE, replace_between_markers

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.codec import load_codec
from cvae.data import image_files
from cvae.data.align import paste_into
from cvae.data.detection import contains_face
from cvae.errors import CvaeError, run_script
from cvae.evaluation import metrics
from cvae.figures import image_grid, save_image
from cvae.model.saving import DEFAULT_MODEL_PATH


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("photos", nargs="*", default=[str(SHOWCASE_IMAGE)],
                        help="public-domain photos to show")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="the model to use")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for alignment.png and alignment.json")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/alignment.md"),
                        help="the document whose \"alignment\" section is rewritten")
    parser.add_argument("--data", help="also measure this folder of photos")
    parser.add_argument("--max-images", type=positive_int, default=1000,
                        help="with --data: at most this many photos, chosen at random")
    args = parser.parse_args(argv)

    codec = load_codec(args.model)
    config = codec.config
    results, rows = [], []
    for photo_path in args.photos:
        photo = np.asarray(image_files.open_photo(photo_path, config.channels))
        entry = {"photo": Path(photo_path).name}
        row = []
        for mode in ("off", "on"):
            try:
                crop, placement = image_files.load_face(photo_path, config.image_size, config.channels,
                                                        image_files.Framing(align=mode))
            except image_files.NoFaceError:
                raise CvaeError(f"{photo_path}: no face found to align") from None
            content = codec.compress_batch(crop[None])[0]
            decoded = codec.decompress_batch([content])[0]
            original, restored = crop[None] / 255.0, decoded[None] / 255.0
            entry[mode] = {"bytes": len(content), "crop": placement.to_dict(),
                           "psnr": float(metrics.psnr(original, restored)[0]),
                           "ssim": float(metrics.ssim(original, restored)[0]),
                           "face_found_in_reconstruction": bool(contains_face(decoded))}
            row += [crop, decoded]
            if mode == "on":
                pasted = paste_into(photo, decoded, placement)
        results.append(entry)
        rows.append(row)
        out = Path(args.out)
        save_image(pasted, out / f"alignment_pasted_{Path(photo_path).stem}.png")
    out = Path(args.out)
    save_image(image_grid(rows), out / "alignment.png")
    write_text(out / "alignment.json", json.dumps(results, indent=2) + "\n")
    lines = ["| photo | crop | bytes | PSNR (dB) | SSIM | detector finds a face in the "
             "reconstruction |", "|---|---|---|---|---|---|"]
    for entry in results:
        for mode, label in (("off", "centred square (`--align off`)"),
                            ("on", "aligned (`--align on`)")):
            numbers = entry[mode]
            lines.append(f"| {entry['photo']} | {label} | {numbers['bytes']} | "
                         f"{numbers['psnr']:.2f} | {numbers['ssim']:.3f} | "
                         f"{'yes' if numbers['face_found_in_reconstruction'] else 'no'} |")
    section = "\n".join(lines)
    replace_between_markers(args.readme, "alignment", section)
    print(section)
    if args.data:
        folder = measure_folder(codec, args.data, args.max_images)
        write_text(out / "alignment_folder.json", json.dumps(folder, indent=2) + "\n")
        lines = [f"{folder['photos']} photos of `{folder['folder']}`; --align on found a face in "
                 f"{folder['on']['aligned']} of them.", "",
                 "| crop | detector finds a face in the reconstruction | PSNR on the crop (dB) |",
                 "|---|---|---|"]
        for mode, label in (("off", "centred square (`--align off`)"),
                            ("on", "aligned (`--align on`)")):
            lines.append(f"| {label} | {100 * folder[mode]['face_rate']:.1f}% | "
                         f"{folder[mode]['psnr']:.2f} |")
        replace_between_markers(args.readme, "alignment-folder", "\n".join(lines))
        print("\n".join(lines))
    return 0


def measure_folder(codec, folder, count):
    """Both crops of up to `count` photos of a folder, compressed and decoded."""
    config = codec.config
    paths = image_files.list_image_files(folder)
    if not paths:
        raise CvaeError(f"no images found in {folder}")
    if len(paths) > count:
        chosen = np.sort(np.random.default_rng(0).choice(len(paths), count, replace=False))
        paths = [paths[i] for i in chosen]
    result = {"folder": str(folder), "photos": len(paths)}
    for mode in ("off", "on"):
        crops, found = [], []
        for path in paths:
            try:
                crop, _ = image_files.load_face(path, config.image_size, config.channels,
                                                image_files.Framing(align=mode))
                crops.append(crop)
                found.append(True)
            except image_files.NoFaceError:
                found.append(False)
        crops = np.stack(crops)
        decoded = codec.decompress_batch(codec.compress_batch(crops))
        faces = [contains_face(image) for image in decoded]
        result[mode] = {
            "aligned": int(sum(found)),
            # A photo with no face found counts as a failure of that path.
            "face_rate": float(sum(faces) / len(paths)),
            "psnr": float(np.mean(metrics.psnr(crops / 255.0, decoded / 255.0)))}
    return result


if __name__ == "__main__":
    sys.exit(run_script(main))
