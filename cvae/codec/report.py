"""How well the codec compresses a set of images, beside JPEG and WebP (Pillow).

Every method is scored on the same 128x128 images the model sees: bytes per
image (a whole file, header included), PSNR and SSIM of what a reader
decodes. JPEG uses Pillow's optimized Huffman tables (its smallest files).
The "size-matched" rows give JPEG and WebP each image's cvae byte budget:
the image is shrunk to the largest side whose file fits (8 pixels at least),
then decoded and scaled back up with a bicubic filter.
"""

import io

import numpy as np
from PIL import Image

from cvae.codec import format as codec_format
from cvae.evaluation import metrics

LOWEST_QUALITY = {"JPEG": 1, "WEBP": 0}
_SIDES = tuple(range(128, 7, -8))


def pillow_round_trip(image, image_format, quality, side=None):
    """uint8 image -> (file size in bytes, the decoded uint8 image at the original size)."""
    picture = Image.fromarray(image.squeeze())
    size = picture.size
    if side is not None and side != size[0]:
        picture = picture.resize((side, side), Image.LANCZOS)
    buffer = io.BytesIO()
    options = {"optimize": True} if image_format == "JPEG" else {}
    picture.save(buffer, image_format, quality=quality, **options)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded = decoded.convert(picture.mode).resize(size, Image.BICUBIC)
    return len(buffer.getvalue()), np.asarray(decoded).reshape(image.shape)


def size_matched(image, image_format, budget):
    """The lowest-quality file of the largest side that fits in `budget` bytes."""
    quality = LOWEST_QUALITY[image_format]
    for side in _SIDES:
        size, decoded = pillow_round_trip(image, image_format, quality, side)
        if size <= budget:
            return size, decoded
    return size, decoded


def compression_report(codec, images, step=None):
    """Scores for each codec mode, the unquantized reconstruction, JPEG and WebP.

    images: uint8 (N, H, W, C) at the model's size. Returns a dict whose
    "rows" each hold method, bytes (mean per image; None when not a file),
    psnr and ssim; "examples" keeps per-image results for the figure.
    """
    modes = [mode for mode in codec_format.MODES
             if mode != "entropy" or codec.table is not None]
    rows = [_row("cvae, unquantized code", None, images, codec.decode(codec.encode(images)))]
    examples = {}
    for mode in modes:
        files = codec.compress_batch(images, mode, step)
        decoded = codec.decompress_batch(files)
        sizes = [len(f) for f in files]
        rows.append(_row(f"cvae {mode}", sizes, images, decoded))
        examples[f"cvae {mode}"] = (sizes, decoded)
    budget_sizes = examples[f"cvae {modes[-1]}"][0]
    for image_format, name in (("JPEG", "JPEG"), ("WEBP", "WebP")):
        quality = LOWEST_QUALITY[image_format]
        lowest = [pillow_round_trip(image, image_format, quality) for image in images]
        matched = [size_matched(image, image_format, budget)
                   for image, budget in zip(images, budget_sizes)]
        for label, results in ((f"{name} q{quality}", lowest),
                               (f"{name} q{quality}, size-matched", matched)):
            sizes, decoded = [r[0] for r in results], np.stack([r[1] for r in results])
            rows.append(_row(label, sizes, images, decoded))
            examples[label] = (sizes, decoded)
    return {"images": len(images), "raw_bytes": int(np.prod(images.shape[1:])),
            "default_mode": modes[-1], "rows": rows, "examples": examples}


def _row(method, sizes, originals, decoded):
    originals, decoded = originals / 255.0, decoded / 255.0
    return {"method": method,
            "bytes": None if sizes is None else float(np.mean(sizes)),
            "max_bytes": None if sizes is None else int(np.max(sizes)),
            "psnr": float(np.mean(metrics.psnr(originals, decoded))),
            "ssim": float(np.mean(metrics.ssim(originals, decoded)))}


def format_report(report):
    lines = [f"{report['images']} images of {report['raw_bytes']} raw bytes each",
             f"{'method':<28} {'bytes':>8} {'max':>6} {'ratio':>7} {'PSNR dB':>8} {'SSIM':>6}"]
    for row in report["rows"]:
        if row["bytes"] is None:
            size, largest, ratio = "-", "-", "-"
        else:
            size, largest = f"{row['bytes']:.1f}", str(row["max_bytes"])
            ratio = f"{report['raw_bytes'] / row['bytes']:.0f}:1"
        lines.append(f"{row['method']:<28} {size:>8} {largest:>6} {ratio:>7} "
                     f"{row['psnr']:>8.2f} {row['ssim']:>6.3f}")
    return "\n".join(lines)


def comparison_figure(report, images, path, count=6):
    """original | cvae (default mode) | JPEG lowest quality | WebP size-matched, with bytes."""
    from cvae.figures import pyplot, save_figure

    plt = pyplot()
    columns = [f"cvae {report['default_mode']}", "JPEG q1", "WebP q0, size-matched"]
    count = min(count, len(images))
    figure, axes = plt.subplots(count, 1 + len(columns),
                                figsize=(1.7 * (1 + len(columns)), 1.8 * count), squeeze=False)
    for row in range(count):
        panels = [("original", images[row])] + [
            (f"{name}\n{report['examples'][name][0][row]} bytes", report["examples"][name][1][row])
            for name in columns]
        for axis, (title, picture) in zip(axes[row], panels):
            axis.imshow(picture.squeeze(), cmap="gray" if picture.shape[-1] == 1 else None)
            axis.set_title(title, fontsize=7)
            axis.axis("off")
    save_figure(figure, path, dpi=110)
