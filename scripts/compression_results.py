#!/usr/bin/env python
"""Regenerate docs/codec.md's compression section: the codec against JPEG,
WebP and AVIF, and its rate-distortion curve.

Runs `cvae compress --report`'s code on held-out faces with the shipped model
and its codec table; then sweeps the rate knob (quantization steps, byte
budgets and the unquantized float16 mode, for the encoder's codes and for
codes refined against the decoder, `--refine-steps`) and every standard
codec's quality settings on a random subset (--rd-images), and writes:

  docs/results/compression.json      every number
  docs/results/compression.png       a public-domain face (data/astronaut.png):
                                     original | cvae | JPEG q1 | WebP size-matched
  docs/results/rate_distortion.png   bytes per face against PSNR and SSIM
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

from cvae.quiet import load_backend_quietly

# Before the imports below load TensorFlow, whose start-up lines it mutes.
load_backend_quietly()

from repository import (
    REPOSITORY_ROOT,
    add_showcase_arguments,
    load_showcase_face,
    replace_between_markers,
)

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, non_negative_int, positive_int
from cvae.codec import load_codec
from cvae.codec.report import comparison_figure, compression_report, pillow_round_trip
from cvae.data import datasets
from cvae.errors import CvaeError, run_script
from cvae.evaluation import metrics
from cvae.model.refinement import SUGGESTED_STEPS
from cvae.model.saving import DEFAULT_MODEL_PATH

RD_STEPS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
RD_BUDGETS = (24, 32, 40, 48, 64, 96, 128, 192)
# Pillow's quality settings swept for each standard codec (the lowest gives
# its smallest file).
RD_QUALITIES = {"JPEG": (1, 5, 10, 20, 30, 50, 70, 90), "WebP": (0, 5, 10, 20, 40, 60, 80, 95),
                "AVIF": (0, 10, 20, 30, 40, 50, 60, 75, 90)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="held-out images (utkface/val)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH),
                        help="the model whose codec is measured")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "docs/results"),
                        help="folder for compression.json and the figure")
    parser.add_argument("--rd-images", type=positive_int, default=300,
                        help="faces (a random subset of --data) in the rate-distortion sweep")
    parser.add_argument("--refine-steps", type=non_negative_int, default=SUGGESTED_STEPS,
                        help="also sweep codes refined by this many steps (`cvae compress "
                             "--refine-steps`); 0 leaves them out")
    add_showcase_arguments(parser)
    args = parser.parse_args(argv)

    codec = load_codec(args.model)
    model = codec.model
    if codec.table is None:
        raise CvaeError(f"{args.model} has no codec table; run `cvae calibrate` first")
    config = model.config
    images, _ = datasets.read_dataset(args.data, config.image_size, config.channels)
    report = compression_report(codec, images)
    report.pop("examples")
    report["default_step"] = codec.table.step
    subset = datasets.random_subset(images, args.rd_images)
    refined = (load_codec(args.model, runtime="keras", refine_steps=args.refine_steps)
               if args.refine_steps else None)
    report["rate_distortion"] = _rate_distortion(codec, subset, refined)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "compression.json", json.dumps(report, indent=2) + "\n")
    face = load_showcase_face(args.showcase, config.image_size, config.channels,
                              crop_box=args.showcase_crop)[None]
    comparison_figure(compression_report(codec, face), face, out / "compression.png")
    _rate_distortion_figure(report["rate_distortion"], out / "rate_distortion.png")

    section = compression_section(report, args)
    replace_between_markers(REPOSITORY_ROOT / "docs/codec.md", "compression", section)
    print(section)
    return 0


def _rate_distortion(codec, images, refined=None):
    """Curves of (bytes, PSNR, SSIM) points: cvae by step, by byte budget and
    unquantized (also from refined codes when `refined`, a codec that
    refines, is given); each standard codec by quality."""
    curves = _cvae_curves("cvae", codec, codec.encode(images), images)
    if refined is not None:
        curves.update(_cvae_curves(refined_name(refined), codec, refined.encode(images), images))
    for name, qualities in RD_QUALITIES.items():
        image_format = name.upper()
        curves[name] = []
        for quality in qualities:
            results = [pillow_round_trip(image, image_format, quality) for image in images]
            curves[name].append(_point(f"q{quality}", images, [r[0] for r in results],
                                       np.stack([r[1] for r in results])))
    return {"images": len(images), "curves": curves}


def refined_name(codec):
    return f"cvae, codes refined {codec.refine_steps} steps"


def _cvae_curves(name, codec, codes, images):
    """The rate knob's curves for these codes: by step, by byte budget, and
    the unquantized float16 file."""
    curves = {f"{name}, by step": [], f"{name}, by --max-bytes": []}
    for step in sorted({*RD_STEPS, codec.table.step}):  # The default step is a point, too.
        files = [codec.pack(code, "entropy", step) for code in codes]
        curves[f"{name}, by step"].append(_point(f"step {step:g}", images, files,
                                                 codec.decompress_batch(files)))
    for budget in RD_BUDGETS:
        try:
            files = [codec.pack(code, max_bytes=budget) for code in codes]
        except CvaeError:  # Some face does not fit this budget at any step.
            continue
        curves[f"{name}, by --max-bytes"].append(_point(f"{budget} bytes", images, files,
                                                        codec.decompress_batch(files)))
    files = [codec.pack(code, "float16") for code in codes]
    curves[f"{name} float16 (unquantized)"] = [_point("float16", images, files,
                                                      codec.decompress_batch(files))]
    return curves


def _point(label, originals, files, decoded):
    sizes = [f if isinstance(f, int) else len(f) for f in files]
    originals, decoded = originals / 255.0, decoded / 255.0
    return {"setting": label, "bytes": float(np.mean(sizes)), "min_bytes": int(np.min(sizes)),
            "max_bytes": int(np.max(sizes)),
            "psnr": float(np.mean(metrics.psnr(originals, decoded))),
            "ssim": float(np.mean(metrics.ssim(originals, decoded)))}


def _rate_distortion_figure(rate_distortion, path):
    from cvae.figures import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        for name, points in rate_distortion["curves"].items():
            axis.plot([p["bytes"] for p in points], [p[metric] for p in points],
                      marker="o", markersize=4, label=name,
                      linestyle="none" if len(points) == 1 else "-")
        axis.set_xscale("log")
        axis.set_xlabel("bytes per face (mean, whole file)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Rate and distortion on {rate_distortion['images']} held-out 128×128 faces")
    save_figure(figure, path, dpi=110)


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
    curves = report["rate_distortion"]["curves"]
    sweep = ["| codec | setting | bytes (mean) | smallest | largest | PSNR (dB) | SSIM |",
             "|---|---|---|---|---|---|---|"]
    sweep += [f"| {name} | {p['setting']} | {p['bytes']:.1f} | {p['min_bytes']} | "
              f"{p['max_bytes']} | {p['psnr']:.2f} | {p['ssim']:.3f} |"
              for name, points in curves.items() for p in points]
    smallest = {name: min(curves[name], key=lambda p: p["bytes"]) for name in RD_QUALITIES}
    loss = unquantized["psnr"] - entropy["psnr"]
    targets = [
        ("at ≤ 128 bytes per face, PSNR within 0.3 dB of the unquantized model",
         entropy["max_bytes"] <= 128 and loss <= 0.3,
         f"default quality: mean {entropy['bytes']:.1f}, largest {entropy['max_bytes']} bytes; "
         f"{entropy['psnr']:.2f} vs {unquantized['psnr']:.2f} dB, {loss:.2f} dB lower"),
        ("... and above JPEG's and AVIF's smallest files",
         entropy["psnr"] > jpeg["psnr"] and entropy["psnr"] > smallest["AVIF"]["psnr"],
         f"{entropy['psnr']:.2f} dB against JPEG q1's {jpeg['psnr']:.2f} dB "
         f"({jpeg['bytes']:.0f} bytes) and AVIF q0's {smallest['AVIF']['psnr']:.2f} dB "
         f"({smallest['AVIF']['bytes']:.0f} bytes, on the sweep's subset)"),
    ]
    refined = _refined_at_default_step(report)
    if refined is not None:
        name, point = refined
        targets.append((f"... the same from {name.split(', by')[0].removeprefix('cvae, ')} "
                        f"(`--refine-steps`), on the sweep's subset at the default step",
                        point["max_bytes"] <= 128 and point["psnr"] > smallest["AVIF"]["psnr"]
                        and point["psnr"] > jpeg["psnr"],
                        f"mean {point['bytes']:.1f}, largest {point['max_bytes']} bytes; "
                        f"{point['psnr']:.2f} dB"))
    moonshot = _moonshot(report, smallest["WebP"])
    return "\n".join([
        f"On {report['images']} held-out faces (`{args.data}`), 128×128, "
        f"{report['raw_bytes']:,} raw bytes each; default mode `{report['default_mode']}`, "
        f"quality medium (step {report['default_step']:g}):",
        "", *table, "",
        "![bytes per face against PSNR and SSIM for cvae, JPEG, WebP and AVIF]"
        "(results/rate_distortion.png)", "",
        f"The rate-distortion sweep, on {report['rate_distortion']['images']} of those faces "
        "chosen at random (the standard codecs at Pillow's quality settings; each one's "
        "lowest setting is the smallest file it can make):",
        "", *sweep, "",
        "Targets (issue 16):",
        *[f"- {name}: **{'met' if met else 'not met'}** ({detail})" for name, met, detail in targets],
        f"- the moonshot, WebP's smallest file's PSNR at a third of its size: {moonshot}",
        "",
        "Reproduce: `python scripts/compression_results.py --data ../shared/faces/utkface/val`.",
    ])


def _refined_at_default_step(report):
    """(curve name, point) of refined codes at the codec's default step, if swept."""
    setting = f"step {report['default_step']:g}"
    for name, points in report["rate_distortion"]["curves"].items():
        if name.startswith("cvae, codes refined") and name.endswith("by step"):
            return next(((name, p) for p in points if p["setting"] == setting), None)
    return None


def _moonshot(report, webp_smallest):
    """How close the byte budget nearest a third of WebP q0's mean size comes to its
    PSNR, from the encoder's codes or refined ones."""
    third = webp_smallest["bytes"] / 3
    fitting = [dict(p, codes=name.removesuffix(", by --max-bytes"))
               for name, points in report["rate_distortion"]["curves"].items()
               if name.endswith("by --max-bytes") for p in points if p["bytes"] <= third]
    if not fitting:
        return f"**not reached** (no byte budget tried gives files of {third:.0f} bytes or fewer)"
    best = max(fitting, key=lambda p: p["psnr"])
    reached = best["psnr"] >= webp_smallest["psnr"]
    return (f"**{'reached' if reached else 'not reached'}**: WebP q0 gives {webp_smallest['psnr']:.2f} "
            f"dB at {webp_smallest['bytes']:.0f} bytes; {best['codes']} at --max-bytes "
            f"{best['setting'].split()[0]} ({best['bytes']:.1f} bytes, under a third) gives "
            f"{best['psnr']:.2f} dB")


if __name__ == "__main__":
    sys.exit(run_script(main))
