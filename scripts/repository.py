"""Things of this repository, not of the installed package: the showcase face
of the README's figures, the held-out share of CelebA, and the rewriting of
the documents' measured sections. Only scripts/ and benchmarks/ use them:
scripts (run as files) import `repository`, benchmarks (run with -m from
the repository root) import `scripts.repository`."""

import shlex
import sys
from pathlib import Path

from cvae.atomic import write_text
from cvae.cli.arguments import crop_box
from cvae.data import image_files
from cvae.errors import CvaeError

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
# The public-domain face the README's figures show (dataset faces may not be
# published).
SHOWCASE_IMAGE = REPOSITORY_ROOT / "data" / "astronaut.png"
# The share of CelebA held out from training, chosen by a hash of the file
# name (cvae.data.datasets.in_validation): the same tenth in the study, the training
# command (--validation-split) and the results.
CELEBA_HELD_OUT = 0.1


def replace_between_markers(path, name, text):
    """Replace what lies between `<!-- name:begin -->` and `<!-- name:end -->` in a
    document (how the scripts keep the README's measured numbers current)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    document = Path(path).read_text(encoding="utf-8")
    if begin not in document or end not in document:
        raise CvaeError(f"{path} has no {begin} ... {end} section")
    head, rest = document.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text(path, f"{head}{begin}\n{text}\n{end}{tail}")


def reproduce_command(script, argv=None):
    """The command line that reruns a script (its path: pass `__file__`)
    with these arguments, for the "Reproduce:" line under a table it writes."""
    relative = Path(script).resolve().relative_to(REPOSITORY_ROOT).as_posix()
    return command_line(f"python {relative}", argv)


def command_line(program, argv=None):
    """`program` followed by these arguments (default: this process's),
    quoted as a shell needs them: a variant's name has spaces, say."""
    arguments = sys.argv[1:] if argv is None else argv
    return " ".join([program, *map(shlex.quote, arguments)])


def add_showcase_arguments(parser):
    """--showcase and --showcase-crop, for the scripts that draw a README figure."""
    parser.add_argument("--showcase", default=str(SHOWCASE_IMAGE),
                        help="the public-domain face the README figure shows")
    parser.add_argument("--showcase-crop", type=crop_box, metavar="LEFT,TOP,WIDTH,HEIGHT",
                        help="a fixed box around the face in --showcase (default: the "
                             "face aligner frames it, as `cvae compress` frames a photo)")


def load_showcase_face(path=SHOWCASE_IMAGE, size=128, channels=3, crop_box=None):
    """The showcase face as the models see a user's photo: framed by the
    aligner like the training data, or by a fixed crop box."""
    framing = image_files.Framing(crop_box=crop_box, align="on")
    return image_files.load_image(path, size, channels, framing=framing)
