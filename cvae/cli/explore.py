"""`cvae generate`, `interpolate`, `traverse`, `attribute`, `edit` and `latent-stats`.

Each writes a PNG (or, for `attribute`, a .npy vector) and calls the library:
`cvae.sampling.samplers` and `cvae.sampling.exploration`.
"""

import json
from pathlib import Path

import numpy as np

from cvae.atomic import refuse_to_replace
from cvae.batching import batches
from cvae.cli.arguments import (
    HelpFormatter,
    add_framing,
    floats,
    framing,
    non_negative_float,
    non_negative_ints,
    positive_int,
    warn_if_not_aligned,
)
from cvae.errors import CvaeError
from cvae.figures import check_image_path

# A grid PNG of more faces would be tens of thousands of pixels a side.
MAX_GRID_FACES = 4096
_MODEL_HELP = "a .keras model (default: the shipped faces model, or $CVAE_MODEL)"


def add_commands(commands):
    from cvae.precision import PRECISIONS
    from cvae.sampling.exploration import INTERPOLATIONS
    from cvae.sampling.samplers import MIXTURE_SUFFIX, SAMPLERS

    def command(name, help, description):
        parser = commands.add_parser(name, help=help, description=description,
                                     formatter_class=HelpFormatter)
        parser.add_argument("--model", help=_MODEL_HELP)
        parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                            help="compute in this precision; auto keeps the model's own "
                                 "unless this machine only emulates it (bfloat16 on a CPU "
                                 "without AVX-512 BF16 or AMX), then runs float32, about "
                                 "twice as fast there")
        parser.add_argument("--force", action="store_true",
                            help="overwrite existing outputs (for generate --fit-data, "
                                 "also an existing mixture file)")
        return parser

    generate = command(
        "generate", "decode random latent codes into new faces",
        "Decode N faces. By default the noise u ~ N(0, T² I) goes through the model's "
        "second-stage VAE to a latent code (--sampler second-stage; Dai & Wipf 2019), or, "
        "for a model without one, is the code itself (--sampler prior). --sampler gmm draws "
        "from a Gaussian mixture fitted to the training set's posterior means (Ghosh et al. "
        f"2020), saved beside the model as MODEL{MIXTURE_SUFFIX} and reused.")
    generate.add_argument("-n", "--count", type=positive_int, default=16, help="faces to generate")
    generate.add_argument("--seed", type=int, default=0, help="seed of the latent draws")
    generate.add_argument("--temperature", type=non_negative_float, default=1.0,
                          help="scale of the prior (or of each mixture component's spread)")
    generate.add_argument("-o", "--out", help="the grid PNG to write")
    generate.add_argument("--separate", metavar="DIR",
                          help="also (or instead) write each face as DIR/sample_NNN.png")
    generate.add_argument("--columns", type=positive_int, default=8, help="faces per row of the grid")
    generate.add_argument("--sampler", choices=SAMPLERS + ("normal",),
                          help="second-stage: N(0, I) through the second-stage VAE (the "
                               "default when the model has one); prior: N(0, I) decoded "
                               "directly (the default otherwise; 'normal' is its old name); "
                               "gmm: the mixture fitted to the codes")
    generate.add_argument("--fit-data", metavar="DIR",
                          help="gmm: training images to fit a new mixture on (saved to "
                               "--mixture, never over an existing file without --force)")
    generate.add_argument("--mixture", metavar="PATH",
                          help=f"gmm: the mixture file to use or, with --fit-data, to write "
                               f"(default: MODEL{MIXTURE_SUFFIX} beside the model)")
    generate.add_argument("--components", type=positive_int, default=10,
                          help="gmm: mixture components when fitting")
    generate.add_argument("--max-fit-images", type=positive_int, default=5000,
                          help="gmm: fit on at most this many images (chosen at random)")
    generate.set_defaults(handler=_generate)

    interpolate = command(
        "interpolate", "decode the way between two faces",
        "Decode STEPS codes from A's to B's. A and B are image files, or seed:N for a draw "
        "from N(0, I) with seed N. slerp follows the great circle (it keeps codes at the "
        "typical radius of N(0, I)); lerp the straight line.")
    interpolate.add_argument("start", metavar="A", help="an image file, or seed:N")
    interpolate.add_argument("end", metavar="B", help="an image file, or seed:N")
    interpolate.add_argument("--steps", type=int, default=8,
                             help="faces from A to B, both included")
    interpolate.add_argument("--mode", choices=INTERPOLATIONS, default="slerp",
                             help="lerp: a straight line; slerp: a great circle, which keeps "
                                  "the codes' norm typical of N(0, I)")
    interpolate.add_argument("-o", "--out", required=True, help="the strip PNG to write")
    add_framing(interpolate)
    interpolate.set_defaults(handler=_interpolate)

    traverse = command(
        "traverse", "vary one latent dimension at a time",
        "Encode IMAGE, then for each chosen dimension decode its code with that dimension "
        "set to STEPS values across --range, the others fixed: a row per dimension. By "
        "default the --count dimensions this image's code uses most (largest KL).")
    traverse.add_argument("image", metavar="IMAGE", help="the face whose code is varied")
    traverse.add_argument("--dims", type=non_negative_ints, help="comma-separated dimensions")
    traverse.add_argument("--count", type=positive_int, default=8,
                          help="how many dimensions when --dims is not given")
    traverse.add_argument("--range", type=float, nargs=2, default=(-3.0, 3.0),
                          metavar=("LOW", "HIGH"),
                          help="the values each dimension takes, in prior standard deviations")
    traverse.add_argument("--steps", type=int, default=7,
                          help="values from LOW to HIGH, both included")
    traverse.add_argument("-o", "--out", required=True, help="the grid PNG to write")
    add_framing(traverse)
    traverse.set_defaults(handler=_traverse)

    attribute = command(
        "attribute", "an attribute vector from two sets of faces",
        "The mean posterior code of the --positive images minus that of the --negative "
        "images, saved as a .npy vector for `cvae edit`.")
    attribute.add_argument("--positive", required=True, help="folder of faces with the attribute")
    attribute.add_argument("--negative", required=True, help="folder of faces without it")
    attribute.add_argument("-o", "--out", required=True, help="the .npy file to write")
    attribute.add_argument("--max-images", type=positive_int,
                           help="use at most this many images of each set (chosen at random)")
    add_framing(attribute, align="off")
    attribute.set_defaults(handler=_attribute)

    edit = command(
        "edit", "add an attribute vector to a face",
        "Decode IMAGE's code plus s times the vector for each scale s (0 gives the plain "
        "reconstruction), as one strip.")
    edit.add_argument("image", metavar="IMAGE", help="the face to edit")
    edit.add_argument("--vector", required=True, help="a .npy vector from `cvae attribute`")
    edit.add_argument("--scale", type=floats, default=(-2.0, -1.0, 0.0, 1.0, 2.0),
                      help="comma-separated scales; write --scale=-2,0,2 when the first is negative")
    edit.add_argument("-o", "--out", required=True, help="the strip PNG to write")
    add_framing(edit)
    edit.set_defaults(handler=_edit)

    stats = command(
        "latent-stats", "how the codes of a set of faces use the latent space",
        "Encode the images and write to OUT_DIR: histograms.png (codes z ~ q(z|x) per "
        "dimension, with the N(0, 1) density over them, dimensions sorted by KL), "
        "kl_per_dimension.png, and stats.json (KL, mean and spread per dimension, active "
        "units).")
    stats.add_argument("--data", required=True, help="folder (or .npy/.npz) of images")
    stats.add_argument("-o", "--out", required=True, metavar="OUT_DIR",
                       help="folder for the figures and stats.json")
    stats.add_argument("--shown", type=positive_int, default=32,
                       help="histograms of this many dimensions (those with the largest KL)")
    stats.add_argument("--max-images", type=positive_int, default=5000,
                       help="use at most this many images, chosen at random")
    stats.add_argument("--seed", type=int, default=0, help="seed of the random choice of images")
    add_framing(stats, align="off")
    stats.set_defaults(handler=_latent_stats)


def _generate(args):
    from cvae.figures import save_image, tiled
    from cvae.sampling import samplers

    if not args.out and not args.separate:
        raise CvaeError("give -o GRID.png, --separate DIR, or both")
    if args.out:
        check_image_path(args.out, args.force)
    if args.out and args.count > MAX_GRID_FACES:
        raise CvaeError(f"a grid of {args.count:,} faces is too large to draw (at most "
                        f"{MAX_GRID_FACES:,}); write them one by one with --separate DIR")
    model, model_path = _load(args)
    mixture = _mixture(args, model, model_path) if args.sampler == "gmm" else None
    codes = samplers.sample_latents(model, args.count, args.seed, args.temperature, mixture,
                                    sampler=args.sampler)
    if args.separate:
        # Decoded and written a chunk at a time: 100,000 faces at once would
        # take 20 GB as float32.
        targets = [Path(args.separate) / f"sample_{index:03d}.png" for index in range(len(codes))]
        for target in targets:
            refuse_to_replace(target, args.force)
        faces = (face for chunk in batches(codes) for face in model.decode(chunk))
        for target, face in zip(targets, faces):
            save_image(face, target)
        print(f"wrote {len(codes)} faces to {args.separate}")
    if args.out:
        save_image(tiled(model.decode(codes), args.columns), args.out)
        print(f"wrote {args.out}")


def _mixture(args, model, model_path):
    from cvae.data import datasets
    from cvae.sampling import samplers

    path = Path(args.mixture) if args.mixture else samplers.mixture_path(model_path)
    if args.fit_data:
        refuse_to_replace(path, args.force,
                          alternative=", or --mixture NEW_PATH to write another")
        images = datasets.read_subset(args.fit_data, args.max_fit_images, model.config.image_size,
                                      model.config.channels, seed=args.seed)
        samplers.check_mixture_data(len(images), args.components, model.config.latent_dim)
        print(f"fitting {args.components} components to {len(images)} posterior means", flush=True)
        mixture = samplers.fit_mixture(model, images, args.components, args.seed,
                                       log=lambda message: print(message, flush=True))
        mixture.save(path)
        print(f"saved the mixture to {path}")
        return mixture
    if not path.is_file():
        raise CvaeError(f"no mixture at {path}; fit one with --fit-data TRAINING_IMAGES")
    return samplers.GaussianMixture.load(path)


def _interpolate(args):
    from cvae.figures import image_grid, save_image
    from cvae.sampling.exploration import interpolation

    check_image_path(args.out, args.force)
    if args.steps < 2:
        raise CvaeError(f"--steps must be at least 2, got {args.steps}")
    model, _ = _load(args)
    start, end = (_endpoint(model, text, framing(args), name)
                  for text, name in ((args.start, "A"), (args.end, "B")))
    save_image(image_grid([interpolation(model, start, end, args.steps, args.mode)]), args.out)
    print(f"wrote {args.out}")


def _traverse(args):
    from cvae.figures import image_grid, save_image
    from cvae.sampling.exploration import traversal

    check_image_path(args.out, args.force)
    if args.steps < 2:
        raise CvaeError(f"--steps must be at least 2, got {args.steps}")
    model, _ = _load(args)
    latent_dim = model.config.latent_dim
    if args.dims and max(args.dims) >= latent_dim:
        raise CvaeError(f"--dims: dimension {max(args.dims)} is out of range 0..{latent_dim - 1}")
    low, high = args.range
    if not low < high:
        raise CvaeError(f"--range: LOW must be below HIGH, got {low} {high}")
    image = _image(model, args.image, framing(args))
    faces, dimensions = traversal(model, image[None], args.dims, np.linspace(low, high, args.steps),
                                  min(args.count, latent_dim))
    save_image(image_grid(list(faces)), args.out)
    print(f"wrote {args.out} (rows: dimensions {', '.join(map(str, dimensions))})")


def _attribute(args):
    from cvae.atomic import atomic_path
    from cvae.data import datasets
    from cvae.sampling.exploration import attribute

    if not args.out.endswith(".npy"):
        raise CvaeError(f"the output must end in .npy, got {args.out}")
    refuse_to_replace(args.out, args.force)
    model, _ = _load(args)
    sets = []
    for folder in (args.positive, args.negative):
        images, _ = datasets.read_dataset(folder, model.config.image_size, model.config.channels,
                                          framing(args))
        sets.append(datasets.random_subset(images, args.max_images))
    vector = attribute(model, *sets)
    with atomic_path(args.out) as temporary:
        np.save(temporary, vector.astype(np.float32))
    print(f"wrote {args.out} ({len(sets[0])} positive, {len(sets[1])} negative images; "
          f"length {np.linalg.norm(vector):.2f})")


def _edit(args):
    from cvae.figures import image_grid, save_image
    from cvae.sampling.exploration import edited

    check_image_path(args.out, args.force)
    model, _ = _load(args)
    if not Path(args.vector).is_file():
        raise CvaeError(f"cannot read the vector {args.vector}: no such file")
    try:
        vector = np.load(args.vector, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        # numpy's own message for a non-.npy file is a paragraph about pickles.
        raise CvaeError(f"cannot read the vector {args.vector}: not a .npy file "
                        f"(make one with cvae attribute)") from None
    if vector.shape != (model.config.latent_dim,):
        raise CvaeError(f"{args.vector} holds shape {vector.shape}; this model needs "
                        f"({model.config.latent_dim},)")
    image = _image(model, args.image, framing(args))
    save_image(image_grid([edited(model, image, vector, args.scale)]), args.out)
    print(f"wrote {args.out}")


def _latent_stats(args):
    from cvae.atomic import write_text
    from cvae.data import datasets
    from cvae.figures import plot_kl_per_dimension, plot_latent_histograms
    from cvae.sampling.exploration import latent_statistics

    model, _ = _load(args)
    images = datasets.read_subset(args.data, args.max_images, model.config.image_size,
                                  model.config.channels, framing(args), args.seed)
    z_mean, z_log_var = model.encode(images)
    stats = latent_statistics(z_mean, z_log_var)
    codes = z_mean + np.exp(0.5 * z_log_var) * np.random.default_rng(args.seed).standard_normal(
        z_mean.shape)
    kl = np.array(stats["kl_per_dimension"])
    shown = [int(d) for d in np.argsort(-kl, kind="stable")[:args.shown]]
    out = Path(args.out)
    plot_latent_histograms(codes, shown, kl, out / "histograms.png")
    plot_kl_per_dimension(kl, out / "kl_per_dimension.png")
    write_text(out / "stats.json", json.dumps(stats, indent=1) + "\n")
    print(f"{stats['images']} images: {stats['active_units']} of {len(kl)} dimensions active, "
          f"KL {stats['kl_total']:.1f} nats; wrote {out}/histograms.png, kl_per_dimension.png, "
          f"stats.json")


def _load(args):
    from cvae.model.saving import default_model_path, load_model

    path = args.model or default_model_path()
    return load_model(path, precision=args.precision), path


def _image(model, path, photo_framing):
    from cvae.data import image_files

    if not Path(path).is_file():
        raise CvaeError(f"no such image file: {path}")
    try:
        image, placement = image_files.load_face(path, model.config.image_size, model.config.channels,
                                                 photo_framing)
    except (OSError, ValueError, SyntaxError) as error:
        raise CvaeError(f"{path}: {image_files.describe_image_error(error)}") from None
    warn_if_not_aligned(path, photo_framing, placement)
    return image



def _endpoint(model, text, photo_framing, name):
    """An image file's code, or seed:N for a draw from N(0, I); `name` is the
    argument's, for the error."""
    from cvae.sampling.samplers import sample_latents

    if text.startswith("seed:"):
        try:
            seed = int(text[len("seed:"):])
        except ValueError:
            seed = -1
        if seed < 0:
            raise CvaeError(f"{name}: expected seed:N with a whole number N >= 0, "
                            f"got {text!r}")
        return sample_latents(model, 1, seed)[0]
    return _image(model, text, photo_framing)
