"""Forged lic and CompressAI-zoo headers with valid CRCs: bounded memory, a one-line error, never a crash.

A forger rewrites the image size (0, 1, 4096, 65535, anything), the rate level or quality, the format and
the stream lengths, then recomputes the CRC. Each codec decodes its seeded cases in one child process
whose address space is capped (RLIMIT_AS) a little above what it uses once its model is loaded: a
header that made it allocate by its claim (a 4096x4096 claim took 3 GB, 65535x65535 crashed) fails
here with MemoryError or a dead child, a crash of the range decoder with a signal.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
HEADROOM = 2 << 30  # address space allowed above the child's own once its model is loaded
RSS_GROWTH = 1 << 30  # what the cases may add to the child's peak resident memory
SIZES = [0, 1, 2, 47, 48, 49, 63, 64, 65, 4096, 65535]
SHAPE = (48, 64)  # the image coded, and the size every case expects unless it says otherwise


def forged_sizes(rng: random.Random) -> tuple[int, int, tuple[int, int]]:
    """A claimed height and width, and the expected shape: the true one, or now and then the claim
    itself when it is small (the decoder then really decodes forged streams at that size)."""
    height = rng.choice([*SIZES, rng.randrange(65536)])
    width = rng.choice([*SIZES, rng.randrange(65536)])
    if rng.random() < 0.3:
        height, width = SHAPE
    small = 0 < height <= 200 and 0 < width <= 200
    expected = (height, width) if small and rng.random() < 0.5 else SHAPE
    return height, width, expected


def forged_streams(rng: random.Random, streams: list[bytes]) -> list[bytes]:
    """The streams cut, grown with random bytes or replaced, to lengths a forger picks."""
    out = []
    for stream in streams:
        half = len(stream) // 8 * 4  # mostly whole 32-bit words, as the range decoder reads them
        length = rng.choice([0, 3, 8, 12, 16, half, half + 2, len(stream), len(stream) + 8, 4096])
        grown = stream + rng.randbytes(max(0, length - len(stream)))
        out.append(grown[:length] if rng.random() < 0.7 else rng.randbytes(length))
    return out


def lic_cases(encoded: bytes, seed: int, count: int) -> list[dict]:
    from bench.lic import bitstream

    header, streams = bitstream.unpack(encoded)
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        height, width, expected = forged_sizes(rng)
        level = rng.choice([header.level, rng.randrange(8), rng.randrange(256)])
        version = rng.choice([2, 3])
        coded = streams if rng.random() < 0.4 else forged_streams(rng, streams)
        fields = list(bitstream.HEADER.unpack_from(encoded))
        fields[1], fields[5], fields[6], fields[7] = version, level, height, width
        body = b"".join(bitstream._varint(len(s)) + s for s in coded[:-1]) + coded[-1]
        if rng.random() < 0.2:  # a first stream's length beyond the data
            body = bitstream._varint(rng.choice([len(body), 2**34])) + body
        fields[8] = zlib.crc32(body, zlib.crc32(bitstream.signed(bitstream.HEADER.pack(*fields), version)))
        data = bitstream.HEADER.pack(*fields) + body
        cases.append({"data": data.hex(), "shape": list(expected), "claimed": [height, width]})
    return cases


def zoo_cases(encoded: bytes, seed: int, count: int) -> list[dict]:
    from bench.adapters.compressai_zoo import FIELDS, HEADER_SIZE, LENGTH, unpack

    _, streams = unpack(encoded)
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        height, width, expected = forged_sizes(rng)
        fields = list(FIELDS.unpack_from(encoded))
        fields[4] = rng.choice([fields[4], fields[4], rng.randrange(256)])  # quality
        fields[2] = fields[2] if rng.random() < 0.85 else rng.randrange(256)  # architecture code
        fields[-2:] = height, width
        forged = streams if rng.random() < 0.4 else forged_streams(rng, streams)
        lengths = [len(s) for s in forged[:-1]]
        if rng.random() < 0.2:
            lengths = [rng.choice([2**32 - 1, sum(map(len, forged))])] * len(lengths)
        body = b"".join(LENGTH.pack(n) + s for n, s in zip(lengths, forged[:-1], strict=True)) + forged[-1]
        head = FIELDS.pack(*fields)
        data = head + LENGTH.pack(zlib.crc32(head + body)) + body
        assert len(head) + LENGTH.size == HEADER_SIZE
        cases.append({"data": data.hex(), "shape": list(expected), "claimed": [height, width]})
    return cases


def child() -> None:
    """In the child: build the codec (argv[2:]: lic ARCHITECTURE, or zoo WEIGHTS_FOLDER), cap the address
    space, decode each case from stdin and print one JSON line per case, then the memory figures."""
    import resource

    kind, argument = sys.argv[2], sys.argv[3]
    if kind == "lic":
        from bench.lic.codec import LicCodec

        codec = LicCodec("lic", {"architecture": argument})
    else:
        from bench.adapters.compressai_zoo import CompressAIZooCodec

        codec = CompressAIZooCodec("cai", {"architecture": "bmshj2018-hyperprior", "weights": argument})
    image = np.random.default_rng(0).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    encoded = codec.encode(image, 1)
    codec.decode(encoded, SHAPE)
    with open("/proc/self/status") as status:
        address_space = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (address_space + HEADROOM, address_space + HEADROOM))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"encoded": encoded.hex()}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            decoded = codec.decode(bytes.fromhex(case["data"]), tuple(case["shape"]))
            result = {"shape": list(decoded.shape)}
        except Exception as exc:  # noqa: BLE001 (any exception is reported, and checked by the parent)
            result = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"baseline": baseline, "peak": peak}), flush=True)


def run_child(kind: str, argument: str, make_cases, seed: int, count: int) -> tuple[list, list, dict]:
    """Start the child, send it the cases made from its own encoding, and read its answers."""
    process = subprocess.Popen(
        [sys.executable, __file__, "child", kind, argument],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    encoded = bytes.fromhex(json.loads(process.stdout.readline())["encoded"])
    cases = make_cases(encoded, seed, count)
    out, err = process.communicate("".join(json.dumps(c) + "\n" for c in cases), timeout=300)
    assert process.returncode == 0, (process.returncode, err[-3000:])  # a signal is negative
    lines = [json.loads(line) for line in out.splitlines()]
    return cases, lines[:-1], lines[-1]


def check(cases: list, results: list, memory: dict, errors: tuple[str, ...]) -> None:
    assert len(results) == len(cases)
    for case, result in zip(cases, results, strict=True):
        if "error" in result:
            assert result["error"] in errors, result
            assert "\n" not in result["message"] and result["message"], result
        else:
            assert result["shape"] == [*case["shape"], 3] and case["claimed"] == case["shape"], (case, result)
    assert memory["peak"] - memory["baseline"] < RSS_GROWTH, memory
    refused = {
        tuple(c["claimed"]) for c, r in zip(cases, results, strict=True) if "claims" in r.get("message", "")
    }
    assert any(4096 in size or 65535 in size for size in refused), refused  # the findings' sizes were tried


@pytest.mark.parametrize("architecture", ["hyperprior", "factorized"])
def test_forged_lic_headers_decode_in_bounded_memory_or_fail_in_one_line(architecture):
    cases, results, memory = run_child("lic", architecture, lic_cases, seed=15, count=40)
    check(cases, results, memory, ("BitstreamError", "NumericsMismatch"))
    assert sum("error" not in r for r in results) >= 1  # the unforged cases still decode


def test_forged_compressai_zoo_headers_decode_in_bounded_memory_or_fail_in_one_line(tmp_path):
    from tests.test_compressai_zoo import FILES, save_zoo_model

    save_zoo_model(tmp_path / FILES["bmshj2018-hyperprior"], "bmshj2018-hyperprior", tables=True)
    cases, results, memory = run_child("zoo", str(tmp_path), zoo_cases, seed=15, count=40)
    check(cases, results, memory, ("CompressAIBitstreamError",))


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    sys.path.insert(0, str(REPO))
    child()
