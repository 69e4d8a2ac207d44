#!/usr/bin/env python
"""The README's alignment figure: a public-domain photo compressed with and
without face alignment.

For each photo (default: the astronaut in data/): the centred-square crop
(`--align off`, what every command did before) and the aligned crop
(`--align on`), each compressed to a `.cvae` file with the model's default
mode and decoded. Reports bytes, PSNR and SSIM of each reconstruction
against its own crop, and whether the stock face detector finds a face in
it; draws crop | reconstruction for both, and the aligned reconstruction
pasted back into the photo (`cvae decompress --paste-into`).

Writes docs/results/alignment.png, docs/results/alignment.json and the
README between the "alignment" markers.

    python scripts/alignment_showcase.py
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cvae import data, metrics
from cvae.align import paste_into
from cvae.arguments import HelpFormatter
from cvae.codec import codec_for
from cvae.detection import contains_face
from cvae.errors import CvaeError, run_script
from cvae.files import (DEFAULT_MODEL_PATH, REPOSITORY_ROOT, SHOWCASE_IMAGE, load_model,
                        replace_between_markers, write_text)
from cvae.plotting import image_grid, save_image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("photos", nargs="*", default=[str(SHOWCASE_IMAGE)],
                        help="public-domain photos to show")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="the model to use")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for alignment.png and alignment.json")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "README.md"),
                        help="the document whose \"alignment\" section is rewritten")
    args = parser.parse_args(argv)

    codec = codec_for(load_model(args.model))
    config = codec.config
    results, rows = [], []
    for photo_path in args.photos:
        photo = np.asarray(data.open_photo(photo_path, config.channels))
        entry = {"photo": Path(photo_path).name}
        row = []
        for mode in ("off", "on"):
            try:
                crop, placement = data.load_face(photo_path, config.image_size, config.channels,
                                                 data.Framing(align=mode))
            except data.NoFaceError:
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
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
