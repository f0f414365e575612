"""The cache in front of a mapped vocabulary's hash index: the CPU time of encoding one
request of `--instances` instances (`FeatureSpace.encode`, the part the cache serves), the
same request over and over (every value a hit after the first) and a fresh request each
time (values drawn uniformly from each vocabulary: mostly misses on the large fields), with
the cache and without it (MAPPED_CACHE_SIZE 0).

    python -m bench.vocabulary_cache runs/big-1.4M [--instances 256] [--requests 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import model.features
from bench.scenarios import instance
from model.bundle import Bundle
from model.features import FeatureSpace

ROUNDS = 5


def encode_us(space: FeatureSpace, requests: list[list[dict[str, object]]]) -> float:
    """The median over ROUNDS of the mean CPU µs a request; the space is built anew each
    round, so every round starts with an empty cache."""
    rounds = []
    for _ in range(ROUNDS):
        fresh = FeatureSpace(space.fields)
        fresh.encode([{}])  # the lookups built, their caches empty
        start = time.process_time()
        for request in requests:
            fresh.encode(request)
        rounds.append((time.process_time() - start) / len(requests) * 1e6)
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.vocabulary_cache",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--instances", type=int, default=256)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args(argv)
    space = Bundle.load(args.bundle).features
    rng = np.random.default_rng(0)
    distinct = [[instance(space.fields, rng) for _ in range(args.instances)]
                for _ in range(args.requests)]
    loads = {"same request": [distinct[0]] * args.requests, "fresh requests": distinct}
    size = model.features.MAPPED_CACHE_SIZE
    for cache in (size, 0):
        model.features.MAPPED_CACHE_SIZE = cache
        figures = {name: round(encode_us(space, requests)) for name, requests in loads.items()}
        print(json.dumps({"cache_size": cache, "instances": args.instances,
                          "encode_us": figures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
