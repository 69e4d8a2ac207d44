#!/usr/bin/env python
"""Requests per second the web demo holds on this machine.

Starts `cvae serve` with the given model on a free loopback port and, for
each number of concurrent clients, sends --requests requests of each kind:
generate (one face) and compress (the public-domain astronaut's face).
Reports requests/s (all answered 200 counted) and the median latency.

Writes benchmarks/serve_load.json and docs/speed.md between the "serve-load"
markers. Run it on an otherwise idle machine.

    python -m benchmarks.serve_load
"""

import argparse
import concurrent.futures
import json
import socket
import statistics
import subprocess
import sys
import time

from cvae.atomic import write_text
from cvae.cli.arguments import HelpFormatter, positive_int
from cvae.errors import CvaeError, run_script
from cvae.model.saving import DEFAULT_MODEL_PATH
from scripts.repository import REPOSITORY_ROOT, replace_between_markers

FACE = REPOSITORY_ROOT / "data" / "astronaut_face.png"
CLIENTS = (1, 4, 16)


def main(argv=None):
    import httpx2 as httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="the model to serve")
    parser.add_argument("--requests", type=positive_int, default=64,
                        help="requests of each kind per number of clients")
    parser.add_argument("--out", default=str(REPOSITORY_ROOT / "benchmarks/serve_load.json"),
                        help="the JSON file of the measurements")
    parser.add_argument("--readme", default=str(REPOSITORY_ROOT / "docs/speed.md"),
                        help="the document whose \"serve-load\" section is rewritten")
    args = parser.parse_args(argv)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cvae.cli", "serve", "--model", args.model,
                               "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    face = FACE.read_bytes()
    kinds = {
        "generate": lambda http, i: http.get(f"{url}/api/generate", params={"seed": i, "count": 1}),
        "compress": lambda http, i: http.post(f"{url}/api/compress",
                                              files={"image": ("face.png", face)}),
    }
    results = []
    try:
        _wait_for(url, server)
        with httpx.Client(timeout=120) as http:
            for send in kinds.values():  # Warm-up: the first calls trace the model.
                send(http, 0)
        for kind, send in kinds.items():
            for clients in CLIENTS:
                latencies = []

                def one(index):
                    with httpx.Client(timeout=120) as http:
                        start = time.perf_counter()
                        status = send(http, index).status_code
                        latencies.append(time.perf_counter() - start)
                        return status

                start = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                    statuses = list(pool.map(one, range(args.requests)))
                elapsed = time.perf_counter() - start
                results.append({"kind": kind, "clients": clients,
                                "answered_200": statuses.count(200),
                                "requests_per_s": round(statuses.count(200) / elapsed, 1),
                                "median_latency_ms": round(1000 * statistics.median(latencies))})
                print(results[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    lines = ["| request | clients at once | requests/s | median latency |", "|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['clients']} | {r['requests_per_s']} | "
              f"{r['median_latency_ms']} ms |" for r in results]
    replace_between_markers(args.readme, "serve-load", "\n".join(lines))
    print("\n".join(lines))
    return 0


def _wait_for(url, server, seconds=120):
    import httpx2 as httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CvaeError(f"the server stopped: {server.stdout.read().strip()}")
        try:
            httpx.get(f"{url}/api/samplers", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise CvaeError("the server did not start in time")


if __name__ == "__main__":
    sys.exit(run_script(main))
