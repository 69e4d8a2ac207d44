#!/usr/bin/env python
"""The codec's entropy coder (constriction's range coder) against the
hand-written arithmetic coder it replaced, on the same quantized codes.

Both code the symbols of the entropy mode at the model's default step under
the same probabilities (each active dimension's quantized Gaussian, as
`cvae.codec` defines it; the hand-written coder gets them as frequency
tables of 2^20). For every face: payload bytes, encode + decode time, and
whether the bytes are the same on a second run and decode back exactly.

Writes benchmarks/entropy_coders.json and docs/codec.md between the
"entropy-coders" markers.

    python -m benchmarks.entropy_coders --data ../shared/faces/utkface/val
"""

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np

from benchmarks import arithmetic_coder
from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter
from cvae.codec import entropy_coding, load_codec
from cvae.data import datasets
from cvae.errors import CvaeError, run_script
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

_FREQUENCY_TOTAL = 1 << 20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="held-out faces (folder or .npy/.npz)")
    parser.add_argument("--model", help="a .keras model (default: the shipped faces model)")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/entropy_coders.json"),
                        help="the JSON file of the measurements")
    parser.add_argument("--doc", default=str(REPOSITORY_ROOT / "docs/codec.md"),
                        help="the document whose \"entropy-coders\" section is rewritten")
    args = parser.parse_args(argv)

    codec = load_codec(args.model)
    if codec.table is None:
        raise CvaeError("the model has no codec table (run `cvae calibrate`)")
    images, _ = datasets.read_dataset(args.data, codec.config.image_size, codec.config.channels)
    z_mean, _ = codec.model.encode(images)
    steps, spreads, bound = codec._entropy_model(float(np.float16(codec.table.step)))
    active = np.asarray(codec.table.active, bool)
    messages = [np.clip(np.round(code[active] / steps), -bound, bound).astype(np.int32)
                for code in z_mean.astype(np.float64)]
    tables = [_frequency_table(spread, bound) for spread in spreads]
    ideal = [sum(-math.log2((t[s + bound + 1] - t[s + bound]) / t[-1])
                 for s, t in zip(message, tables)) / 8 for message in messages]

    coders = {
        "constriction range coder": (
            lambda symbols: entropy_coding.encode(symbols, spreads, bound),
            lambda payload: entropy_coding.decode(payload, spreads, bound)),
        "hand-written arithmetic coder": (
            lambda symbols: arithmetic_coder.encode([int(s) + bound for s in symbols], tables),
            lambda payload: np.array(arithmetic_coder.decode(payload, tables)) - bound),
    }
    results = {"faces": len(messages), "active_dimensions": int(active.sum()),
               "step": codec.table.step, "ideal_bytes_mean": round(statistics.mean(ideal), 2),
               "coders": {}}
    for name, (encode, decode) in coders.items():
        sizes, times, exact = [], [], True
        for symbols in messages:
            start = time.perf_counter()
            payload = encode(symbols)
            decoded = decode(payload)
            times.append(time.perf_counter() - start)
            exact &= bool(np.array_equal(decoded, symbols)) and encode(symbols) == payload
            sizes.append(len(payload))
        results["coders"][name] = {"payload_bytes_mean": round(statistics.mean(sizes), 2),
                                   "payload_bytes_max": max(sizes),
                                   "encode_decode_ms_median": round(1000 * statistics.median(times), 3),
                                   "exact": exact}
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    rows = ["| coder | payload bytes per face (mean) | largest | encode + decode per face "
            "(median) | same bytes twice, decodes exactly |", "|---|---|---|---|---|"]
    for name, measured in results["coders"].items():
        rows.append(f"| {name} | {measured['payload_bytes_mean']} | "
                    f"{measured['payload_bytes_max']} | {measured['encode_decode_ms_median']} ms "
                    f"| {'yes' if measured['exact'] else 'NO'} |")
    section = "\n".join([
        f"On the codes of {results['faces']} faces ({args.data}), {results['active_dimensions']} "
        f"active dimensions at the default step {results['step']:g}; the information content "
        f"under the coders' shared model is {results['ideal_bytes_mean']} bytes per face:", "",
        *rows, "",
        "Reproduce: `python -m benchmarks.entropy_coders --data ../shared/faces/utkface/val`."])
    replace_between_markers(args.doc, "entropy-coders", section)
    print(section)
    return 0


def _frequency_table(spread, bound):
    """Cumulative frequencies (total 2^20) of N(0, spread^2) quantized to the
    integers -bound..bound, every symbol at least 1, the tails in the end bins."""
    edges = np.arange(-bound, bound) + 0.5
    cdf = np.array([0.0] + [0.5 * (1.0 + math.erf(e / (spread * math.sqrt(2.0)))) for e in edges]
                   + [1.0])
    frequencies = 1 + np.floor(np.diff(cdf) * (_FREQUENCY_TOTAL - (2 * bound + 1)))
    return [0] + np.cumsum(frequencies.astype(np.int64)).tolist()


if __name__ == "__main__":
    sys.exit(run_script(main))
