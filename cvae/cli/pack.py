"""`cvae pack`: a training set as one small file, to send where it trains."""

from cvae.cli.arguments import HelpFormatter, add_framing, framing, positive_int
from cvae.errors import CvaeError


def add_commands(commands):
    from cvae.data.datasets import PACK_QUALITY

    pack = commands.add_parser(
        "pack", help="write a training set as one small file, to train on another machine",
        description="Read a folder of images (or a .npy/.npz array) as `cvae train --data` "
                    "reads it, and write each face WebP-encoded into one .npz that `cvae "
                    "train --data` reads back, with the same training and validation split. "
                    "About 1.5 kB a face at 128x128: 30,000 faces fit in 50 MB, where "
                    "uint8 arrays take 1.5 GB. Lossy: the report says how far from the "
                    "originals the packed faces are.",
        formatter_class=HelpFormatter)
    pack.add_argument("data", help="a folder of images or a .npy/.npz array")
    pack.add_argument("-o", "--out", required=True, help="the pack to write (.npz)")
    pack.add_argument("--image-size", type=positive_int, default=128,
                      help="side of the square faces, in pixels")
    pack.add_argument("--quality", type=positive_int, default=PACK_QUALITY,
                      help="WebP quality, 1 to 100: lower makes a smaller pack, further "
                           "from the originals")
    pack.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_framing(pack, align="off")
    pack.set_defaults(handler=_pack, starts_light=True, check_first=_check)


def _check(args):

    from cvae.atomic import refuse_inside_installed_package, refuse_to_replace
    from cvae.data.datasets import require_pack_quality
    from cvae.data.image_files import require_exists

    require_exists(args.data)
    if not args.out.endswith(".npz"):
        raise CvaeError(f"the pack must end in .npz, got {args.out}")
    require_pack_quality(args.quality)
    refuse_to_replace(args.out, args.force)
    refuse_inside_installed_package(args.out)


def _pack(args):
    import os

    import numpy as np

    from cvae.atomic import atomic_path
    from cvae.data import datasets

    images, keys = datasets.read_keyed(args.data, args.image_size, framing=framing(args),
                                       progress=True)
    arrays = datasets.encode_pack(images, keys, args.quality)
    with atomic_path(args.out) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)
    packed, _ = datasets.read_pack(args.out)
    errors = np.mean((packed.astype(np.float64) - images) ** 2, axis=(1, 2, 3))
    psnr = np.mean(10 * np.log10(255.0 ** 2 / np.maximum(errors, 1e-10)))
    print(f"wrote {args.out}: {len(images)} faces, "
          f"{len(arrays['webp_bytes']) / len(images):.0f} bytes each, {psnr:.1f} dB PSNR from "
          f"the originals, {os.path.getsize(args.out) / 1e6:.1f} MB")
