#!/usr/bin/env python
"""Regenerate docs/codec.md's compression section: the codec against JPEG and WebP.

Runs `cvae compress --report`'s code on held-out faces with the shipped model
and its codec table, then measures the entropy mode at other steps, and writes:

  docs/results/compression.json  every number
  docs/results/compression.png   a public-domain face (data/astronaut.png):
                                 original | cvae | JPEG q1 | WebP size-matched
  docs/codec.md, between the "compression" markers

    python scripts/compression_results.py --data ../shared/faces/utkface/val

Dataset faces may not be published, so the figure uses the astronaut; to see
the same figure for held-out faces locally, run
`cvae compress ../shared/faces/utkface/val --report --figure faces.png`.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cvae import data, metrics
from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, add_showcase_arguments
from cvae.codec import load_codec
from cvae.codec.report import comparison_figure, compression_report
from cvae.errors import CvaeError, run_script
from cvae.repository import REPOSITORY_ROOT, replace_between_markers
from cvae.saving import DEFAULT_MODEL_PATH

OTHER_STEPS = (2.0, 3.0, 5.0, 6.0, 8.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="held-out images (utkface/val)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH),
                        help="the model whose codec is measured")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for compression.json and the figure")
    add_showcase_arguments(parser)
    args = parser.parse_args(argv)

    codec = load_codec(args.model)
    model = codec.model
    if codec.table is None:
        raise CvaeError(f"{args.model} has no codec table; run `cvae calibrate` first")
    config = model.config
    images, _ = data.read_dataset(args.data, config.image_size, config.channels)
    report = compression_report(codec, images)
    report.pop("examples")
    report["steps"] = _other_steps(codec, images)
    report["default_step"] = codec.table.step

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "compression.json", json.dumps(report, indent=2) + "\n")
    face = data.load_image(args.showcase, config.image_size, config.channels,
                           framing=args.showcase_crop)[None]
    comparison_figure(compression_report(codec, face), face, out / "compression.png")

    section = compression_section(report, args)
    replace_between_markers(REPOSITORY_ROOT / "docs/codec.md", "compression", section)
    print(section)
    return 0


def _other_steps(codec, images):
    reference = codec.decode(codec.model.encode(images)[0]) / 255.0
    rows = []
    for step in sorted(set(OTHER_STEPS) | {codec.table.step}):
        files = codec.compress_batch(images, "entropy", step)
        decoded = codec.decompress_batch(files) / 255.0
        psnr = float(np.mean(metrics.psnr(images / 255.0, decoded)))
        rows.append({"step": step, "bytes": float(np.mean([len(f) for f in files])),
                     "max_bytes": max(len(f) for f in files), "psnr": psnr,
                     "psnr_vs_unquantized": float(np.mean(metrics.psnr(reference, decoded)))})
    return rows


def compression_section(report, args):
    rows = {row["method"]: row for row in report["rows"]}
    entropy, unquantized, jpeg = rows["cvae entropy"], rows["cvae, unquantized code"], rows["JPEG q1"]
    table = ["| method | bytes per face (mean) | largest | ratio to raw | PSNR (dB) | SSIM |",
             "|---|---|---|---|---|---|"]
    for row in report["rows"]:
        if row["bytes"] is None:
            cells = [row["method"], "-", "-", "-"]
        else:
            cells = [row["method"], f"{row['bytes']:.1f}", str(row["max_bytes"]),
                     f"{report['raw_bytes'] / row['bytes']:.0f}:1"]
        table.append("| " + " | ".join(cells + [f"{row['psnr']:.2f}", f"{row['ssim']:.3f}"]) + " |")
    steps = ["| step (posterior σ) | bytes (mean) | largest | PSNR (dB) |", "|---|---|---|---|"]
    steps += [f"| {row['step']:g}{' (default)' if row['step'] == report['default_step'] else ''} "
              f"| {row['bytes']:.1f} | {row['max_bytes']} | {row['psnr']:.2f} |"
              for row in report["steps"]]
    loss = unquantized["psnr"] - entropy["psnr"]
    targets = [
        ("≤ 128 bytes per face file, header included", entropy["max_bytes"] <= 128,
         f"mean {entropy['bytes']:.1f}, largest {entropy['max_bytes']}"),
        ("decompressed PSNR within 0.3 dB of the unquantized reconstruction", loss <= 0.3,
         f"{entropy['psnr']:.2f} vs {unquantized['psnr']:.2f} dB, {loss:.2f} dB lower"),
        ("smaller and better than JPEG at quality 1",
         entropy["bytes"] < jpeg["bytes"] and entropy["psnr"] > jpeg["psnr"],
         f"{entropy['bytes']:.1f} vs {jpeg['bytes']:.1f} bytes, "
         f"{entropy['psnr']:.2f} vs {jpeg['psnr']:.2f} dB"),
    ]
    return "\n".join([
        f"On {report['images']} held-out faces (`{args.data}`), 128×128, "
        f"{report['raw_bytes']:,} raw bytes each; default mode `{report['default_mode']}`, "
        f"step {report['default_step']:g}:",
        "", *table, "",
        "The entropy mode's size against quality, by quantization step:",
        "", *steps, "",
        "Targets (issue 4):",
        *[f"- {name}: **{'met' if met else 'not met'}** ({detail})" for name, met, detail in targets],
        "",
        "Reproduce: `python scripts/compression_results.py --data ../shared/faces/utkface/val` "
        "(about 2 minutes).",
    ])


if __name__ == "__main__":
    sys.exit(run_script(main))
