#!/usr/bin/env python
"""Wall time of one-file `cvae compress` and `cvae decompress`, start-up
included, on each runtime: what a user waits for in a shell or a script.

Each command runs --repeats times as a fresh process (after one untimed
run, so the files are in the page cache) on the public-domain astronaut
photo (aligned, as by default) with the given model; the median is reported.

Writes benchmarks/codec_startup.json and docs/codec.md between the
"codec-startup" markers. Run it on an otherwise idle machine.

    python -m benchmarks.codec_startup
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.processes import timed_run
from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.codec.litert import litert_status
from cvae.errors import CvaeError, run_script
from cvae.model.saving import default_model_path
from scripts.repository import REPOSITORY_ROOT, SHOWCASE_IMAGE, replace_between_markers

TARGET_SECONDS = 1.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", default=str(default_model_path()),
                        help="the model (with its LiteRT files and codec table)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed runs of each")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/codec_startup.json"),
                        help="the JSON file of the measurements")
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "docs/codec.md"),
                        help="the document whose \"codec-startup\" section is rewritten")
    args = parser.parse_args(argv)
    usable, why_not = litert_status(args.model)
    if not usable:
        raise CvaeError(why_not)

    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "repeats": args.repeats, "seconds": {}}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for runtime in ("litert", "keras"):
            packed, unpacked = folder / f"packed-{runtime}", folder / f"unpacked-{runtime}"
            compress = ["compress", str(SHOWCASE_IMAGE), "-o", str(packed)]
            decompress = ["decompress", str(packed / f"{SHOWCASE_IMAGE.stem}.cvae"),
                          "-o", str(unpacked)]
            for name, command in (("compress", compress), ("decompress", decompress)):
                full = [sys.executable, "-m", "cvae.cli", *command, "--model", args.model,
                        "--runtime", runtime, "--force"]
                times = [timed_run(full) for _ in range(args.repeats + 1)][1:]
                results["seconds"][f"{name}, {runtime}"] = round(statistics.median(times), 3)
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    seconds = results["seconds"]
    rows = ["| one file, start-up included (median of "
            f"{args.repeats}) | LiteRT runtime | Keras runtime | ratio |", "|---|---|---|---|"]
    for name in ("compress", "decompress"):
        litert, keras = seconds[f"{name}, litert"], seconds[f"{name}, keras"]
        rows.append(f"| `cvae {name}` | {litert:.2f} s | {keras:.2f} s | {keras / litert:.1f}× |")
    met = all(seconds[f"{name}, litert"] < TARGET_SECONDS for name in ("compress", "decompress"))
    section = "\n".join([
        *rows, "",
        f"Target (issue 16): one file in under {TARGET_SECONDS:g} s each way: "
        f"**{'met' if met else 'not met'}**. Measured on {results['cpus']} CPU cores "
        f"({results['machine']}) by `python -m benchmarks.codec_startup`."])
    replace_between_markers(args.doc, "codec-startup", section)
    print(section)
    return 0



if __name__ == "__main__":
    sys.exit(run_script(main))
