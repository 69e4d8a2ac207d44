"""`cvae score` (how unlike the training faces each image is) and
`cvae calibrate-score` (its threshold, stored beside the model)."""

import json

from cvae.cli.arguments import HelpFormatter, add_framing, fraction, framing, positive_int
from cvae.cli.codec import FailureLog, add_runtime, load_codec_quietly
from cvae.errors import CvaeError

_MODEL_HELP = "a .keras model (default: the shipped faces model, or $CVAE_MODEL)"


def add_commands(commands):
    from cvae.anomaly import DEFAULT_SCORE, FALSE_ALARM_RATE, SCORE_SUFFIX, SCORES

    score = commands.add_parser(
        "score", help="how unlike the training faces each image is (an anomaly score)",
        description="Score each image (or each image in a folder): higher means less like the "
                    "faces the model was trained on. An image over the model's threshold "
                    f"(MODEL{SCORE_SUFFIX}, from `cvae calibrate-score`) is an outlier. A "
                    "folder is ranked, the oddest first. The score corrects for the trap "
                    "of likelihood models, which rate plain images as likely (docs/anomaly.md).",
        formatter_class=HelpFormatter)
    score.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                       help="image files, or folders of them (read one level deep)")
    score.add_argument("--model", help=_MODEL_HELP)
    score.add_argument("--json", action="store_true",
                       help="one JSON object per line: file, score, outlier, threshold")
    add_framing(score)
    from cvae.codec import RUNTIMES

    add_runtime(score, RUNTIMES)
    score.set_defaults(handler=_score, starts_light=True)

    calibrate = commands.add_parser(
        "calibrate-score", help="set a model's anomaly threshold on its training faces",
        description="Fit the training faces' codes, and set the threshold that "
                    "--false-alarms of held-out training faces exceed; write "
                    f"MODEL{SCORE_SUFFIX} beside the model (replaced only with --force).",
        formatter_class=HelpFormatter)
    calibrate.add_argument("--model", required=True, help="the .keras model to calibrate")
    calibrate.add_argument("--data", required=True, help="its training images (folder or .npy)")
    calibrate.add_argument("--score", choices=SCORES, default=DEFAULT_SCORE,
                           help="which score (docs/anomaly.md compares them)")
    calibrate.add_argument("--false-alarms", type=fraction, default=FALSE_ALARM_RATE,
                           help="the share of held-out training faces the threshold flags")
    calibrate.add_argument("--max-images", type=positive_int, default=3000,
                           help="training faces whose codes are fitted")
    calibrate.add_argument("--force", action="store_true", help=f"replace MODEL{SCORE_SUFFIX}")
    calibrate.set_defaults(handler=_calibrate_score)


def _score(args):
    import numpy as np

    from cvae.anomaly import scorer_beside
    from cvae.codec.batch import framed_batches
    from cvae.model.saving import default_model_path

    model_path = args.model or default_model_path()
    scorer = scorer_beside(model_path)
    if scorer is None:
        raise CvaeError(f"no anomaly threshold for {model_path}: make one with `cvae "
                        f"calibrate-score --model {model_path} --data TRAINING_IMAGES`")
    failed = FailureLog()
    # The codec's model: its LiteRT files where they are, which start without TensorFlow.
    model = load_codec_quietly(model_path, args.runtime).model
    # A batch at a time, read on several threads: a large folder is never
    # held whole, only its scores are, for the ranking.
    readable, scores = [], []
    for ready in framed_batches(args.inputs, None, model.config, framing(args), failed):
        readable.extend(path for path, *_ in ready)
        scores.append(scorer(model, np.stack([image for _, _, image, _ in ready])))
    if readable:
        values = np.concatenate(scores)
        for index in np.argsort(-values, kind="stable"):
            outlier = bool(values[index] > scorer.threshold)
            if args.json:
                print(json.dumps({"file": str(readable[index]), "score": float(values[index]),
                                  "outlier": outlier, "threshold": scorer.threshold}))
            else:
                print(f"{values[index]:10.3f}  {'outlier' if outlier else 'face   '}  "
                      f"{readable[index]}")
    failed.exit_if_any(len(readable))


def _calibrate_score(args):
    from cvae.anomaly import calibrate_scorer, score_path
    from cvae.atomic import refuse_inside_installed_package, refuse_to_replace
    from cvae.data import datasets
    from cvae.model.saving import load_model

    target = score_path(args.model)
    refuse_inside_installed_package(target)
    refuse_to_replace(target, args.force)
    model = load_model(args.model, precision="float32")
    training, held_out = datasets.read_dataset(args.data, model.config.image_size,
                                               model.config.channels, validation_fraction=0.05)
    if len(held_out) < 10:
        raise CvaeError(f"{args.data}: {len(held_out)} held-out faces (5 %) are too few to "
                        f"set a threshold; give at least 200 training images")
    training = datasets.random_subset(training, args.max_images)
    print(f"fitting the codes of {len(training)} faces; threshold on {len(held_out)} "
          f"held-out faces at {100 * args.false_alarms:g} % false alarms", flush=True)
    scorer = calibrate_scorer(model, training, held_out, args.score, args.false_alarms)
    scorer.save(target)
    print(f"score {scorer.score}, threshold {scorer.threshold:.4g}; wrote {target}")
