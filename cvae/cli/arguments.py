"""Argument types shared by the `cvae` subcommands: each turns bad text into a
one-line argparse error."""

import argparse
import math


def positive_int(text):
    return checked(int, text, lambda v: v > 0, "a positive integer")


def fraction(text):
    """A share of a set: at least 0, below 1."""
    return checked(float, text, lambda v: 0.0 <= v < 1.0, "a fraction from 0 to below 1")


def port_number(text):
    return checked(int, text, lambda v: 1 <= v <= 65535, "a port number from 1 to 65535")


def non_negative_int(text):
    return checked(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return checked(float, text, lambda v: v > 0, "a positive number")


def non_negative_float(text):
    return checked(float, text, lambda v: v >= 0, "a number >= 0")


def decoder_scale(text):
    if text in ("learned", "calibrated"):
        return text
    return checked(float, text, lambda v: v > 0, "a positive number, 'learned' or 'calibrated'")


def positive_floats(text):
    return tuple(positive_float(part) for part in text.split(","))


def positive_ints(text):
    return tuple(checked(int, part, lambda v: v > 0, "comma-separated positive integers")
                 for part in text.split(","))


def floats(text):
    return tuple(checked(float, part, math.isfinite, "comma-separated finite numbers")
                 for part in text.split(","))


def non_negative_ints(text):
    return [checked(int, part, lambda v: v >= 0, "comma-separated integers >= 0")
            for part in text.split(",")]


def crop_box(text):
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"expected LEFT,TOP,WIDTH,HEIGHT, got {text!r}")
    values = [checked(int, part, lambda v: v >= 0, "non-negative integers") for part in parts]
    if values[2] == 0 or values[3] == 0:
        raise argparse.ArgumentTypeError("the crop box needs a positive width and height")
    return tuple(values)


def checked(convert, text, valid, expected):
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: what is wrong, and where
    the help is (argparse prints the whole usage first, up to 22 lines)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default after its help, except where the help
    already says it or there is nothing to show (None, or an on/off flag).
    A sequence is shown as the command line takes it: 32,64,128."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or isinstance(action.default, bool) or "default" in text:
            return text
        if isinstance(action.default, (tuple, list)):
            shown = ",".join(str(value) for value in action.default)
            return f"{text} (default: {shown.replace('%', '%%')})"
        return super()._get_help_string(action)


def add_refine_steps(parser, purpose, note=""):
    """--refine-steps N (0: off): `purpose` says what the command does with
    the refined codes, `note` anything more."""
    parser.add_argument("--refine-steps", type=non_negative_int, default=0, metavar="N",
                        help=f"{purpose}, each refined by N gradient steps against the decoder "
                             "(docs/model.md, \"Refining codes\"; 50 is a good value, a "
                             "decoder pass forward and back per step)"
                             + (f"; {note}" if note else ""))


def add_measuring_precision(parser):
    """--precision for commands and scripts that publish measurements: by
    default the model runs as saved, as the published figures were measured."""
    from cvae.precision import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS,
                        help="run the model in this precision (default: as saved, as the "
                             "published figures were measured; auto: float32 where this "
                             "machine would only emulate the saved one, about twice as fast "
                             "there)")


def add_framing(parser, align="auto"):
    """--crop-box, --align and --face-index: how a photo becomes a face crop
    (read back with `framing`). Commands that read a person's photos align by
    default; those that read training sets (already framed) do not."""
    parser.add_argument("--crop-box", type=crop_box, metavar="LEFT,TOP,WIDTH,HEIGHT",
                        help="crop every image to this box before resizing (wins over --align)")
    from cvae.data.image_files import ALIGN_MODES

    parser.add_argument("--align", choices=ALIGN_MODES, default=align,
                        help="frame the face like the training data: auto falls back to the "
                             "centred square (with a warning) when no face is found, on makes "
                             "that an error for the file, off always takes the centred square")
    parser.add_argument("--face-index", type=non_negative_int, default=0,
                        help="which face to align when a photo holds several: 0 for the "
                             "largest, 1 for the next, ...")


def warn_if_not_aligned(path, photo_framing, placement):
    """--align auto's one warning line for a photo in which no face was found."""
    import sys

    if photo_framing.aligning and not placement.aligned:
        print(f"cvae: warning: {path}: no face found; using the centred square",
              file=sys.stderr, flush=True)


def framing(args):
    """The `cvae.data.image_files.Framing` that add_framing's options ask for."""
    from cvae.data.image_files import Framing

    return Framing(crop_box=args.crop_box, align=args.align, face_index=args.face_index)
