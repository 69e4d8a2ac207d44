"""The `cvae` command. Each subcommand parses its arguments and calls the library.

Every user error ends as one line on stderr and a non-zero exit code.
"""

import argparse
import sys

from cvae.atomic import refuse_to_replace
from cvae.cli import codec as codec_commands
from cvae.cli import explore as explore_commands
from cvae.cli import pack as pack_commands
from cvae.cli import score as score_commands
from cvae.cli.arguments import (
    HelpFormatter,
    Parser,
    add_framing,
    add_measuring_precision,
    add_refine_steps,
    decoder_scale,
    fraction,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
    positive_ints,
)
from cvae.errors import CvaeError, Interrupted, run_command
from cvae.quiet import load_backend_quietly
from cvae.training.runs import CHECKPOINTS, MODEL_FILE, TrainOptions, run_directory


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2

    def run():
        # Mistakes found from the arguments alone are reported before the
        # few seconds TensorFlow takes to load.
        if getattr(args, "check_first", None):
            args.check_first(args)
        if not getattr(args, "starts_light", False):
            load_backend_quietly()
        return args.handler(args)

    # Inside run_command, so that Ctrl-C while TensorFlow loads is one line too.
    return run_command("cvae", run)


def build_parser():
    from cvae import __version__
    from cvae.model.config import LIKELIHOODS, PRESETS, SECOND_STAGE_KL_WEIGHT
    from cvae.precision import PRECISIONS
    from cvae.training.strategies import DISTRIBUTIONS

    parser = Parser(
        prog="cvae", description="Convolutional VAE for 128x128 faces: train, compress, generate.")
    parser.add_argument("--version", action="version", version=f"cvae {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a VAE on a folder of images with model.fit",
        description="Train a VAE on a folder of images (searched recursively; JPEG, PNG, BMP, "
                    "WebP, GIF) or a .npy/.npz array. Rerunning the same command after an "
                    "interruption resumes from the last finished epoch.",
        formatter_class=HelpFormatter)
    train.add_argument("--data", required=True, action="append",
                       help="folder of training images, or .npy/.npz; give --data again to "
                            "train on several sources together")
    train.add_argument("--val-data", action="append",
                       help="folder of validation images, repeatable "
                            "(default: a fixed hash-based share of each --data)")
    defaults = TrainOptions(data=None)
    train.add_argument("--validation-split", type=fraction, default=defaults.validation_fraction,
                       help="share of --data held out for validation when --val-data is absent")
    train.add_argument("--preset", default=defaults.preset, choices=sorted(PRESETS),
                       help="the network and objective to start from (docs/model.md, \"Presets\")")
    train.add_argument("--epochs", type=positive_int, default=defaults.epochs,
                       help="passes over the training set")
    train.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                       help="images per training step")
    train.add_argument("--learning-rate", type=positive_float, default=defaults.learning_rate,
                       help="Adam's step size")
    train.add_argument("--lr-schedule", default=defaults.learning_rate_schedule,
                       choices=("constant", "cosine"),
                       help="cosine: decay the learning rate to zero over all epochs")
    train.add_argument("--warmup-steps", type=non_negative_int, default=defaults.warmup_steps,
                       help="raise the learning rate linearly from zero over this many steps "
                            "first: Adam's first full-size steps can blow training up")
    train.add_argument("--time-limit", type=positive_float, metavar="MINUTES",
                       help="stop cleanly after this much training time (counted across "
                            "resumes); the last epoch is cut short but validated and saved")
    train.add_argument("--out", default=None, help="run directory (default: runs/PRESET)")
    train.add_argument("--overwrite", action="store_true",
                       help="start again in an --out that holds a finished run (its files are "
                            "deleted); without it a finished run is trained on only with more "
                            "--epochs, and never replaced")
    train.add_argument("--precision", default=defaults.precision, choices=PRECISIONS,
                       help="auto: mixed_float16 on a GPU, mixed_bfloat16 on CPUs with "
                            "AVX-512 BF16 or AMX, else float32")
    train.add_argument("--xla", default="auto", choices=("auto", "on", "off"),
                       help="XLA compilation of the train step; auto: on for GPUs, off on CPUs")
    add_framing(train, align="off")
    train.add_argument("--no-flip", dest="flip", action="store_false",
                       help="do not flip training images left-right at random")
    train.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                       help="do not write TensorBoard logs to OUT/logs")
    train.add_argument("--seed", type=int, help="seed for weights, shuffling and sampling")
    train.add_argument("--distribute", default=defaults.distribute, choices=DISTRIBUTIONS,
                       help="mirrored: every local GPU (tf.distribute.MirroredStrategy); "
                            "data-parallel: every device of every process "
                            "(keras.distribution on JAX; docs/distributed.md). "
                            "--batch-size is the global batch")
    train.add_argument("--initial-model", metavar="PATH",
                       help="fine-tune: start from this .keras model's weights and configuration "
                            "(the preset does not apply, and of the overrides only the "
                            "adversarial ones and --encoder-extra-convs; the KL weight starts at "
                            "full beta) with a fresh optimizer")
    overrides = train.add_argument_group("overrides of the preset's configuration")
    overrides.add_argument("--image-size", type=positive_int, help="side of the square images, in pixels")
    overrides.add_argument("--channels", type=int, choices=(1, 3), help="1: grey, 3: RGB")
    overrides.add_argument("--latent-dim", type=positive_int, help="dimensions of the latent code z")
    overrides.add_argument("--encoder-extra-convs", type=non_negative_int, metavar="N",
                           help="3x3 convolutions after each of the encoder's downsamplings "
                                "(2 per residual block)")
    overrides.add_argument("--likelihood", choices=LIKELIHOODS,
                           help="the decoder's distribution p(x|z) (docs/model.md, \"The model\")")
    overrides.add_argument("--decoder-scale", type=decoder_scale,
                           help="a positive number, 'learned' or 'calibrated'")
    overrides.add_argument("--beta", type=non_negative_float, help="weight of the KL term")
    overrides.add_argument("--reconstruction-weight", type=non_negative_float,
                           help="weight of the reconstruction term (0: train the KL alone)")
    overrides.add_argument("--kl-warmup-steps", type=non_negative_int,
                           help="ramp the KL weight linearly from 0 to beta over these steps")
    overrides.add_argument("--face-weight", type=non_negative_float,
                           help="extra weight of the inner face (brows, eyes, nose, mouth) in "
                                "the reconstruction term, where the aligner frames it; 0: every "
                                "pixel alike")
    overrides.add_argument("--adversarial-weight", type=non_negative_float,
                           help="weight of a PatchGAN adversarial term (0: none; "
                                "docs/model.md, \"The adversarial term\")")
    overrides.add_argument("--adversarial-start-step", type=non_negative_int,
                           help="optimizer steps before the adversarial term starts")
    overrides.add_argument("--discriminator-scales", type=positive_int,
                           help="image scales the adversarial term's discriminator judges "
                                "(1: the image; N: also the image halved, quartered, ...; "
                                "docs/model.md, \"The adversarial term\")")
    train.set_defaults(handler=_train, check_first=_check_training_paths)

    evaluate = commands.add_parser(
        "evaluate", help="measure a model on held-out images against PCA and real-vs-real",
        description="Reconstruction (MSE, PSNR, SSIM, also at 64x64), -ELBO, IWAE bound and "
                    "bits per dimension, active units and KL per dimension, and sample SWD, "
                    "beside a PCA baseline with as many dimensions and the real-vs-real floor.",
        formatter_class=HelpFormatter)
    evaluate.add_argument("--data", required=True, help="folder (or .npy/.npz) of held-out images")
    evaluate.add_argument("--model", help="a .keras model (default: saved_models/cvae-faces.keras, "
                                          "or $CVAE_MODEL)")
    evaluate.add_argument("--train-data", help="training images to fit the PCA baseline on "
                                               "(without it the baseline is skipped)")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.add_argument("--identity", choices=("auto", "on", "off"), default="auto",
                          help="judge whether each reconstruction is the same person (dlib's "
                               "face recogniser, pip install \"cvae[identity]\"); auto: where "
                               "it is installed and the faces are 64 px or more")
    evaluate.add_argument("--iwae-samples", type=positive_int, default=16,
                          help="importance samples per image for the IWAE bound")
    evaluate.add_argument("--pca-images", type=positive_int, default=5000,
                          help="at most this many training images fit the PCA (chosen at random)")
    evaluate.add_argument("--max-images", type=positive_int,
                          help="evaluate on at most this many held-out images (chosen at random)")
    evaluate.add_argument("--validation-split", type=fraction, metavar="FRACTION",
                          help="evaluate only the part of --data that `cvae train "
                               "--validation-split FRACTION` holds out (by a hash of the file "
                               "name), to compare a run's checkpoints without the test set")
    add_refine_steps(evaluate, "also score reconstructions from refined codes")
    evaluate.add_argument("--inception-weights", metavar="PATH",
                          help="local InceptionV3 weights (no top) to also report FID; "
                               "nothing is ever downloaded")
    add_framing(evaluate, align="off")
    add_measuring_precision(evaluate)
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed for dequantization, importance samples, SWD and sampling")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser(
        "export", help="publish a run's best model without its optimizer state",
        description="Write RUN_DIR's best model.keras without optimizer state (about a third "
                    "of the size) to OUT, and OUT's stem + .json with the run's configuration, "
                    "options and per-epoch history.")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
    export.add_argument("-o", "--out", required=True, help="the .keras file to write")
    export.add_argument("--force", action="store_true",
                        help="replace an existing output (and its .json record)")
    export.add_argument("--checkpoint", type=_checkpoint, default="best",
                        metavar="{best,last,N}",
                        help="best: the run's best epoch by its monitored loss (model.keras); "
                             "last: the state it last reached (for the adversarial term, "
                             "whose sharpening raises that loss); N: its state after epoch N, "
                             "which runs with the adversarial term keep in epochs/")
    export.add_argument("--no-litert", dest="litert", action="store_false",
                        help="do not write the LiteRT encoder and decoder beside OUT")
    export.set_defaults(handler=_export)

    litert = commands.add_parser(
        "export-litert", help="write a model's encoder and decoder for the light runtime",
        description="Convert a model's encoder and decoder to LiteRT files beside it "
                    "(MODEL.encoder.tflite, MODEL.decoder.tflite and MODEL.litert.json), so "
                    "that compress and decompress start in a fraction of a second without "
                    "TensorFlow (docs/codec.md, \"Start-up\"). `cvae export` and `cvae "
                    "second-stage` write them too; rerun this after changing a model file "
                    "another way.")
    litert.add_argument("--model", help="a .keras model (default: the shipped faces model)")
    litert.set_defaults(handler=_export_litert)

    second = commands.add_parser(
        "second-stage", help="give a model a second-stage VAE, so N(0, I) samples are faces",
        description="Train a small second VAE (Dai & Wipf 2019) on the model's latent codes of "
                    "training images and write the model with it inside to OUT: sampling then "
                    "maps noise ~ N(0, I) through it to codes where the decoder knows faces "
                    "(through the Gaussian fitted to its own aggregate posterior, with its own "
                    "learned noise added, and rescaled to the training codes' mean and "
                    "variance; docs/model.md, \"The second stage\"). The first "
                    "stage is unchanged, so reconstructions, the codec and .cvae files made "
                    "before stay as they are, and the codec table and the mixture beside "
                    "MODEL are copied beside OUT. A model that already has a second stage "
                    "gets a new one.",
        formatter_class=HelpFormatter)
    second.add_argument("--model", help="a .keras model (default: the shipped faces model)")
    second.add_argument("--data", required=True, action="append",
                        help="training images (folder or .npy/.npz), repeatable")
    second.add_argument("-o", "--out", required=True, help="the .keras file to write")
    second.add_argument("--max-images", type=positive_int,
                        help="encode at most this many images of each --data, chosen at "
                             "random (default: all of them)")
    second.add_argument("--epochs", type=positive_int, default=100,
                        help="passes over the codes")
    second.add_argument("--units", type=positive_ints, default="1024,1024",
                        help="hidden widths of the second stage's networks")
    second.add_argument("--kl-weight", type=non_negative_float, default=SECOND_STAGE_KL_WEIGHT,
                        help="weight of the second stage's own KL term (below 1: closer codes; "
                             "research/model/notebook.md, \"Second-stage variants\")")
    second.add_argument("--seed", type=int, default=0, help="seed of the choice and training")
    second.add_argument("--force", action="store_true", help="replace an existing output")
    second.set_defaults(handler=_second_stage)

    codec_commands.add_commands(commands)
    explore_commands.add_commands(commands)
    score_commands.add_commands(commands)
    pack_commands.add_commands(commands)

    serve = commands.add_parser(
        "serve", help="a local web page to compress, decompress and generate faces",
        description="Start the web demo (needs the extra: pip install -e '.[demo]'). It binds "
                    "to 127.0.0.1, so only this machine can reach it, unless --host says "
                    "otherwise.",
        formatter_class=HelpFormatter)
    serve.add_argument("--model", help="a .keras model (default: the shipped faces model)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (0.0.0.0: every network interface)")
    serve.add_argument("--port", type=port_number, default=8000, help="port to listen on (1-65535)")
    add_refine_steps(serve, "compress uploads from refined codes")
    serve.set_defaults(handler=_serve)
    return parser


def _check_training_paths(args):
    """Each --data and --val-data is an array file or a folder with an image
    in it, and --initial-model exists: found now, not after TensorFlow loads
    or the training set is read."""
    import os
    from pathlib import Path

    from cvae.data.image_files import IMAGE_EXTENSIONS

    for option, sources in (("--data", args.data), ("--val-data", args.val_data or [])):
        for source in sources:
            path = Path(source)
            if not path.exists():
                raise CvaeError(f"{option} {source}: no such file or directory")
            if path.is_dir() and not any(
                    name.lower().endswith(IMAGE_EXTENSIONS)
                    for _, _, names in os.walk(path, followlinks=True) for name in names):
                raise CvaeError(f"{option} {source}: the folder holds no images "
                                f"({', '.join(IMAGE_EXTENSIONS)})")
    if args.initial_model and not Path(args.initial_model).is_file():
        raise CvaeError(f"--initial-model {args.initial_model}: no such file")


def _train(args):
    from cvae.training.trainer import train

    override_names = ("image_size", "channels", "latent_dim", "encoder_extra_convs",
                      "likelihood", "decoder_scale",
                      "beta", "kl_warmup_steps", "reconstruction_weight",
                      "face_weight", "adversarial_weight", "adversarial_start_step",
                      "discriminator_scales")
    options = TrainOptions(
        data=args.data, out=args.out, preset=args.preset,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        learning_rate_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
        time_limit_minutes=args.time_limit,
        precision=args.precision, jit_compile={"on": True, "off": False}.get(args.xla, "auto"),
        validation_data=args.val_data,
        validation_fraction=args.validation_split, crop_box=args.crop_box, align=args.align,
        face_index=args.face_index, flip=args.flip,
        seed=args.seed, tensorboard=args.tensorboard, initial_model=args.initial_model,
        distribute=args.distribute, overwrite=args.overwrite,
        config_overrides={name: getattr(args, name) for name in override_names
                          if getattr(args, name) is not None})
    try:
        train(options)
    except KeyboardInterrupt:
        raise Interrupted("rerun the same command to resume from the last finished epoch") \
            from None
    print(f"saved the best model to {run_directory(options) / MODEL_FILE}")


def _evaluate(args):
    import json
    from pathlib import Path

    from cvae.cli.arguments import framing
    from cvae.data import datasets
    from cvae.evaluation.evaluate import evaluate, format_report, load_inception
    from cvae.model.saving import load_model

    if args.inception_weights and not Path(args.inception_weights).is_file():
        raise CvaeError(f"no such Inception weights file: {args.inception_weights}")
    model = load_model(args.model, precision=args.precision)
    size, channels = model.config.image_size, model.config.channels
    images, held_out = datasets.read_dataset(args.data, size, channels, framing(args),
                                             validation_fraction=args.validation_split or 0.0)
    if args.validation_split:
        if len(held_out) < 4:
            raise CvaeError(f"--validation-split {args.validation_split} holds out "
                            f"{len(held_out)} of the images in {args.data}; evaluation needs 4")
        images = held_out
    images = datasets.random_subset(images, args.max_images, args.seed)
    train_images = None
    if args.train_data:
        # The same images the PCA would pick from the whole folder, decoded alone.
        train_images = datasets.read_subset(args.train_data, args.pca_images, size, channels,
                                            framing(args), args.seed)
        # Checked now, not after the model's metrics: PCA needs as many images as components.
        if len(train_images) < model.config.latent_dim:
            raise CvaeError(f"--train-data: {len(train_images)} readable images are too few for "
                            f"a PCA with {model.config.latent_dim} components (the latent size)")
    inception = load_inception(args.inception_weights) if args.inception_weights else None
    results = evaluate(model, images, train_images, iwae_samples=args.iwae_samples,
                       pca_images=args.pca_images, inception=inception, seed=args.seed,
                       refine_steps=args.refine_steps,
                       identity={"on": True, "off": False}.get(args.identity, "auto"))
    print(json.dumps(results, indent=2) if args.json else format_report(results))


def _checkpoint(text):
    if text in CHECKPOINTS:
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected best, last or an epoch number, "
                                     f"got {text!r}")


def _export(args):
    from pathlib import Path

    from cvae.training.runs import MODEL_FILE, export_model

    if not Path(args.run_dir, MODEL_FILE).is_file():
        raise CvaeError(f"{args.run_dir} is not a training run (it has no {MODEL_FILE})")
    if not args.out.endswith(".keras"):
        raise CvaeError(f"the output must end in .keras, got {args.out}")
    for path in (Path(args.out), Path(args.out).with_suffix(".json")):
        refuse_to_replace(path, args.force)
    written = export_model(args.run_dir, args.out, args.checkpoint)
    print(f"wrote {written} and its training record {Path(written).with_suffix('.json')}")
    if args.litert:
        _write_litert(args.out)


def _export_litert(args):
    from cvae.model.saving import default_model_path

    _write_litert(args.model or default_model_path(), asked=True)


def _write_litert(model_path, asked=False):
    """The LiteRT files beside a model; on JAX, whose models the converter
    cannot trace, a line saying where to make them (an error if `asked`)."""
    import keras

    from cvae.codec.litert import write_litert_files
    from cvae.model.saving import load_model

    if keras.backend.backend() == "jax":
        why = ("the LiteRT converter needs the TensorFlow backend; there, run "
               f"cvae export-litert --model {model_path}")
        if asked:
            raise CvaeError(why)
        print(f"no LiteRT files: {why}")
        return
    for path in write_litert_files(load_model(model_path), model_path):
        print(f"wrote {path}")


def _second_stage(args):

    import numpy as np

    from cvae.data import datasets
    from cvae.model.saving import default_model_path, load_model, save_model
    from cvae.model.second_stage import fit_second_stage

    if not args.out.endswith(".keras"):
        raise CvaeError(f"the output must end in .keras, got {args.out}")
    refuse_to_replace(args.out, args.force)
    model = load_model(args.model)
    config = model.config
    images = np.concatenate([datasets.read_subset(source, args.max_images, config.image_size,
                                                  config.channels, seed=args.seed)
                             for source in args.data])
    print(f"training the second stage on the codes of {len(images)} images", flush=True)
    combined = fit_second_stage(model, images, units=args.units, epochs=args.epochs,
                                seed=args.seed, verbose=2, kl_weight=args.kl_weight)
    save_model(combined, args.out)
    print(f"wrote {args.out}")
    _write_litert(args.out)
    _copy_first_stage_files(args.model or default_model_path(), args.out, args.force)
    from cvae.codec import table_path

    if not table_path(args.out).exists():
        print(f"next, for `cvae compress --model {args.out}`: its codec table, with "
              f"`cvae calibrate --model {args.out} --data TRAINING_IMAGES` (a few minutes)")


def _copy_first_stage_files(source_model, target_model, force):
    """The codec table and the mixture describe the first stage alone, so the
    ones beside the source model hold for the target too."""
    import shutil
    from pathlib import Path

    from cvae.atomic import atomic_path
    from cvae.codec import table_path
    from cvae.sampling.samplers import mixture_path

    for beside in (table_path, mixture_path):
        source, target = Path(beside(source_model)), Path(beside(target_model))
        if not source.is_file() or source.resolve() == target.resolve():
            continue
        if target.exists() and not force:
            print(f"cvae: warning: kept {target} (use --force to replace it with {source})",
                  file=sys.stderr)
            continue
        with atomic_path(target) as temporary:
            shutil.copyfile(source, temporary)
        print(f"copied {source} to {target}")


def _serve(args):
    from cvae.codec import load_codec
    from cvae.model.saving import default_model_path
    from cvae.sampling.samplers import mixture_beside
    from cvae.serve import listening_socket, serve

    # Bound first: a busy port or an unknown host fails at once, before the
    # model loads, and the banner appears only once the address is ours.
    listener = listening_socket(args.host, args.port)
    model_path = args.model or default_model_path()
    # The demo also generates, so it needs the Keras model, not only its LiteRT codec.
    serve(load_codec(model_path, runtime="keras", refine_steps=args.refine_steps),
          mixture_beside(model_path), listener, codec_commands.scorer_or_warning(model_path))
