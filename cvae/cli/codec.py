"""`cvae compress`, `cvae decompress`, `cvae reconstruct` and `cvae calibrate`."""

import sys

from cvae.cli.arguments import (
    HelpFormatter,
    add_framing,
    add_refine_steps,
    framing,
    non_negative_int,
    positive_float,
    positive_floats,
    positive_int,
    warn_if_not_aligned,
)
from cvae.errors import CvaeError
from cvae.quiet import load_backend_quietly


def add_commands(commands):
    from cvae.codec import (
        CALIBRATION_STEPS,
        DEFAULT_MODE,
        DEFAULT_QUALITY,
        DEFAULT_RUNG,
        QUALITY_LEVELS,
        RUNTIMES,
        TABLE_SUFFIX,
    )
    from cvae.codec.detail import RUNGS as DETAIL_RUNGS
    from cvae.codec.format import MODES

    compress = commands.add_parser(
        "compress", help="compress face images to tiny .cvae files",
        description="Compress each image (or each file in a folder) to OUT_DIR/STEM.cvae. "
                    "The face in each photo is found and framed like the training data "
                    "(--align), and the crop resized to the model's size. With --report, "
                    "write nothing and print bytes, PSNR and SSIM for each mode beside JPEG "
                    "and WebP instead.",
        formatter_class=HelpFormatter)
    compress.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                          help="image files, or folders of them (read one level deep)")
    # One of the two is required; argparse's usage then shows (-o OUT_DIR | --report).
    destination = compress.add_mutually_exclusive_group(required=True)
    destination.add_argument("-o", "--out", metavar="OUT_DIR", help="folder for the .cvae files")
    compress.add_argument("--model", help="a .keras model (default: the shipped faces model)")
    compress.add_argument("--mode", default=DEFAULT_MODE, choices=MODES,
                          help="entropy: range-coded, needs the model's codec table "
                               f"(MODEL{TABLE_SUFFIX}, from `cvae calibrate`)")
    rate = compress.add_mutually_exclusive_group()
    rate.add_argument("--quality", choices=list(QUALITY_LEVELS),
                      help="entropy mode: the calibrated step that keeps PSNR within "
                           + ", ".join(f"{dB:g} dB ({name})" for name, dB in QUALITY_LEVELS.items())
                           + f" of the unquantized model (default: {DEFAULT_QUALITY}); "
                             "--mode float16 is the unquantized model itself")
    rate.add_argument("--max-bytes", type=positive_int, metavar="N",
                      help="entropy mode: the best file of the rate ladder that fits in N "
                           "bytes, header included, chosen for each image: the code alone "
                           "up to about 90 bytes, then the detail layer on top of it, which "
                           "keeps buying fidelity to 400 bytes and beyond (docs/codec.md, "
                           "\"The rate ladder\")")
    rate.add_argument("--step", type=positive_float,
                      help="entropy mode: quantization step in posterior standard deviations "
                           "(larger = smaller files)")
    compress.add_argument("--rung", type=non_negative_int, metavar="R",
                          help=f"detail mode: the detail layer's rung, 0 (the smallest "
                               f"picture) to {len(DETAIL_RUNGS) - 1} (the largest); the default, "
                               f"{DEFAULT_RUNG}, is "
                               f"{DETAIL_RUNGS[DEFAULT_RUNG][0]}x{DETAIL_RUNGS[DEFAULT_RUNG][0]} "
                               f"at WebP quality {DETAIL_RUNGS[DEFAULT_RUNG][1]}")
    add_refine_steps(compress, "quantize refined codes",
                     "higher PSNR for about the same bytes; needs the Keras runtime, and "
                     "decompression is unchanged")
    compress.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_runtime(compress, RUNTIMES)
    add_framing(compress)
    destination.add_argument("--report", action="store_true",
                             help="measure instead of writing files (inputs: folders of images)")
    compress.add_argument("--figure", metavar="PNG", help="with --report: also write "
                          "original | cvae | JPEG | WebP side by side")
    compress.add_argument("--max-images", type=positive_int,
                          help="with --report: use at most this many images (chosen at random)")
    compress.add_argument("--json", action="store_true",
                          help="print JSON: each file's output, bytes and crop (box and angle "
                               "in the photo's pixels), or with --report the report")
    compress.set_defaults(handler=_compress, starts_light=True)

    decompress = commands.add_parser(
        "decompress", help="decode .cvae files back to PNG images",
        description="Decode each .cvae file (or each file in a folder) to OUT_DIR/STEM.png "
                    "with the model that made it; a file from another model is refused.")
    decompress.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR",
                            help=".cvae files, or folders of them")
    decompress.add_argument("-o", "--out", required=True, metavar="OUT_DIR",
                            help="folder for the decoded PNG files")
    decompress.add_argument("--model", help="a .keras model (default: the shipped faces model)")
    decompress.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_runtime(decompress, RUNTIMES)
    decompress.add_argument("--paste-into", metavar="ORIGINAL",
                            help="put the decoded face back into the original photo (one input "
                                 "file): the face is found in ORIGINAL again with the same "
                                 "--align, --face-index and --crop-box as compress used, and "
                                 "the output is the whole photo")
    add_framing(decompress)
    decompress.set_defaults(handler=_decompress, starts_light=True)

    reconstruct = commands.add_parser(
        "reconstruct", help="encode and decode face images (the model's reconstruction)",
        description="Write each image's reconstruction to OUT_DIR/STEM.png: the face is "
                    "framed as compress frames it, encoded, and decoded without quantization "
                    "(the quality of --mode float16, without writing a .cvae). With "
                    "--refine-steps the code is first refined against the decoder.",
        formatter_class=HelpFormatter)
    reconstruct.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                             help="image files, or folders of them (read one level deep)")
    reconstruct.add_argument("-o", "--out", required=True, metavar="OUT_DIR",
                             help="folder for the PNG files")
    reconstruct.add_argument("--model", help="a .keras model (default: the shipped faces model)")
    add_refine_steps(reconstruct, "decode refined codes", "needs the Keras runtime")
    reconstruct.add_argument("--side-by-side", action="store_true",
                             help="write the framed input and its reconstruction next to "
                                  "each other (with --paste-back: the photo and the result)")
    reconstruct.add_argument("--paste-back", action="store_true",
                             help="write the whole photo with the reconstructed face put back "
                                  "where it was framed, its edge blended into the photo")
    reconstruct.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_runtime(reconstruct, RUNTIMES)
    add_framing(reconstruct)
    reconstruct.set_defaults(handler=_reconstruct, starts_light=True)

    calibrate = commands.add_parser(
        "calibrate", help="measure a model's codec table for the entropy mode",
        description="Measure each latent dimension's posterior spread and activity on "
                    "training images, pick for each --quality level the coarsest "
                    "quantization step that keeps PSNR within its loss, and write "
                    f"MODEL{TABLE_SUFFIX} beside the model: what `cvae compress --model "
                    "MODEL` needs for your own model. It takes a few minutes on a CPU "
                    "(progress is printed per step). An existing table is replaced only "
                    "with --force, since files compressed with it will no longer decode; "
                    "the installed package is never written to.",
        formatter_class=HelpFormatter)
    calibrate.add_argument("--data", required=True, help="training images (folder or .npy/.npz)")
    calibrate.add_argument("--model", required=True,
                           help="the .keras model to calibrate; its table is written beside it")
    calibrate.add_argument("--force", action="store_true",
                           help=f"replace an existing MODEL{TABLE_SUFFIX}")
    calibrate.add_argument("--max-images", type=positive_int, default=1000,
                           help="use at most this many images (chosen at random)")
    calibrate.add_argument("--steps", type=positive_floats,
                           default=",".join(f"{s:g}" for s in CALIBRATION_STEPS),
                           help="candidate steps, in posterior standard deviations")
    add_framing(calibrate, align="off")
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the random choice of images")
    calibrate.set_defaults(handler=_calibrate)


def add_runtime(parser, runtimes):
    parser.add_argument("--runtime", choices=runtimes, default="auto",
                        help="litert: run the model's LiteRT files (MODEL.encoder.tflite, "
                             "MODEL.decoder.tflite; `cvae export-litert` makes them), which "
                             "starts in a fraction of a second without TensorFlow; keras: load "
                             "the .keras model with TensorFlow; auto: litert when its files "
                             "are there and match the model")


def load_codec_quietly(model_path, runtime, refine_steps=0):
    """load_codec, loading TensorFlow (quietly) only when the Keras runtime runs."""
    from cvae.codec import load_codec
    from cvae.codec.litert import litert_status

    if refine_steps and runtime == "litert":
        raise CvaeError("--refine-steps needs the Keras runtime: the LiteRT files cannot take "
                        "gradients (leave out --runtime, or give --runtime keras)")
    if runtime == "keras" or refine_steps or (runtime == "auto"
                                              and not litert_status(model_path)[0]):
        load_backend_quietly()
    return load_codec(model_path, runtime=runtime, refine_steps=refine_steps)


def _compress(args):
    from cvae.codec import table_path
    from cvae.codec.batch import compress_files
    from cvae.model.saving import default_model_path

    if not args.report and (args.figure or args.max_images):
        raise CvaeError("--figure and --max-images go with --report")
    model_path = args.model or default_model_path()
    if args.mode not in ("entropy", "detail") and (args.quality or args.max_bytes or args.step):
        raise CvaeError("--quality, --max-bytes and --step go with --mode entropy")
    if args.mode == "detail" and args.max_bytes:
        raise CvaeError("--max-bytes chooses the detail rung itself: use it with --mode entropy")
    if args.rung is not None and args.mode != "detail":
        raise CvaeError("--rung goes with --mode detail")
    from cvae.codec.detail import RUNGS

    if args.rung is not None and args.rung >= len(RUNGS):
        raise CvaeError(f"--rung {args.rung}: there are {len(RUNGS)} rungs, 0 to {len(RUNGS) - 1}")
    if args.report:
        load_backend_quietly()  # The report's metrics run on TensorFlow.
    codec = load_codec_quietly(model_path, args.runtime, args.refine_steps)
    if args.mode in ("entropy", "detail") and codec.table is None and not args.report:
        raise CvaeError(f"the {args.mode} mode needs {table_path(model_path)}; make it with "
                        f"`cvae calibrate --model {model_path} --data TRAINING_IMAGES`, "
                        f"or choose --mode int8")
    step = codec.table.step_for(args.quality) if args.quality and codec.table else args.step
    if args.report:
        if args.max_bytes:
            raise CvaeError("--report measures fixed steps; use --quality or --step with it")
        return _compression_report(args, codec, step)
    failures = FailureLog()
    photo_framing = framing(args)
    written = compress_files(
        codec, args.inputs, args.out, args.mode, step, args.force, photo_framing,
        max_bytes=args.max_bytes, rung=args.rung,
        on_error=failures,
        on_fallback=lambda path, placement: warn_if_not_aligned(path, photo_framing, placement),
        scorer=scorer_or_warning(model_path), on_outlier=_warn_outlier)
    if args.json:
        import json

        print(json.dumps([{"input": str(source), "output": str(target), "bytes": size,
                           "crop": placement.to_dict()}
                          for source, target, size, placement in written], indent=2))
    elif written:
        mean_bytes = sum(size for _, _, size, _ in written) / len(written)
        aligned = sum(placement.aligned for *_, placement in written)
        how = f"the rate ladder up to {args.max_bytes} bytes" if args.max_bytes else args.mode
        print(f"compressed {len(written)} image(s) to {args.out} ({how}, "
              f"{mean_bytes:.1f} bytes on average; {aligned} face(s) aligned)")
    failures.exit_if_any(len(written))


def scorer_or_warning(model_path):
    """The model's anomaly scorer (MODEL.score.npz), or None, with a warning
    when it has one that does not load: the check is a courtesy, never a
    reason to stop."""
    from cvae.anomaly import scorer_beside

    try:
        return scorer_beside(model_path)
    except CvaeError as error:
        print(f"cvae: warning: not checking that the images are faces: {error}",
              file=sys.stderr, flush=True)
        return None


def _warn_outlier(path, score, threshold):
    print(f"cvae: warning: {path}: does not look like a face (anomaly score {score:.4g}, "
          f"over the model's threshold {threshold:.4g}); its code may decode to a face "
          f"that is not there", file=sys.stderr, flush=True)


def _compression_report(args, codec, step):
    import json

    import numpy

    from cvae.codec.report import comparison_figure, compression_report, format_report
    from cvae.data import datasets

    config = codec.config
    images = numpy.concatenate([datasets.read_subset(source, args.max_images, config.image_size,
                                                     config.channels, framing(args))
                                for source in args.inputs])
    images = datasets.random_subset(images, args.max_images)
    report = compression_report(codec, images, step=step)
    if args.figure:
        comparison_figure(report, images, args.figure)
    report.pop("examples")
    print(json.dumps(report, indent=2) if args.json else format_report(report))


def _decompress(args):
    from cvae.codec.batch import decompress_files
    from cvae.model.saving import default_model_path

    codec = load_codec_quietly(args.model or default_model_path(), args.runtime)
    paste = _paste_target(args, codec.config) if args.paste_into else None
    failures = FailureLog()
    written = decompress_files(codec, args.inputs, args.out, args.force, on_error=failures,
                               paste=paste)
    if written:
        print(f"decompressed {len(written)} file(s) to {args.out}")
    failures.exit_if_any(len(written))


def _reconstruct(args):
    from cvae.codec.batch import reconstruct_files
    from cvae.model.saving import default_model_path

    codec = load_codec_quietly(args.model or default_model_path(), args.runtime, args.refine_steps)
    failures = FailureLog()
    photo_framing = framing(args)
    written = reconstruct_files(
        codec, args.inputs, args.out, args.force, photo_framing, on_error=failures,
        on_fallback=lambda path, placement: warn_if_not_aligned(path, photo_framing, placement),
        side_by_side=args.side_by_side, paste_back=args.paste_back)
    if written:
        aligned = sum(placement.aligned for *_, placement in written)
        print(f"reconstructed {len(written)} image(s) to {args.out} ({aligned} face(s) aligned)")
    failures.exit_if_any(len(written))


def _calibrate(args):
    from cvae.atomic import refuse_inside_installed_package, refuse_to_replace
    from cvae.codec import calibrate, table_path
    from cvae.data import datasets, image_files
    from cvae.model.saving import load_model

    target = table_path(args.model)
    # Checked before the model and the images are read: both take a while.
    refuse_inside_installed_package(target)
    refuse_to_replace(target, args.force,
                      ", and files compressed with it would no longer decode")
    image_files.require_exists(args.data)
    model = load_model(args.model)
    images = datasets.read_subset(args.data, args.max_images, model.config.image_size,
                                  model.config.channels, framing(args), args.seed)
    print(f"calibrating on {len(images)} images, {len(args.steps)} steps "
          f"(each compresses and decompresses them all)", flush=True)
    table = calibrate(model, images, args.steps,
                      log=lambda message: print(message, flush=True))
    table.save(target)
    levels = ", ".join(f"{name} {step:g}" for name, step in table.quality_steps.items())
    print(f"steps by quality: {levels}; wrote {target}")


def _paste_target(args, config):
    """(photo, placement) for --paste-into: the face found again as compress found it."""
    from pathlib import Path

    import numpy

    from cvae.data import image_files

    if len(args.inputs) != 1 or not Path(args.inputs[0]).is_file():
        raise CvaeError("--paste-into takes exactly one .cvae file")
    original = Path(args.paste_into)
    if not original.is_file():
        raise CvaeError(f"no such image file: {original}")
    try:
        photo = image_files.open_photo(original, config.channels)
        placement = image_files.face_placement(photo, framing(args), image_size=config.image_size)
    except (OSError, ValueError, SyntaxError) as error:
        raise CvaeError(f"{original}: {image_files.describe_image_error(error)}") from None
    warn_if_not_aligned(original, framing(args), placement)
    return numpy.asarray(photo), placement


class FailureLog:
    """Per-file errors of a batch: one line each, then a non-zero exit at the end."""

    def __init__(self):
        self.count = 0

    def __call__(self, path, message):
        self.count += 1
        print(f"cvae: error: {path}: {message}", file=sys.stderr, flush=True)

    def exit_if_any(self, done):
        if self.count:
            raise BatchFailed(f"{self.count} input(s) failed, {done} done")


class BatchFailed(CvaeError):
    """Some files of a batch failed (each was already reported)."""
