"""lic's bitstream: a 27-byte header, then the entropy-coded streams. Every byte counts in the rate.

Header (big-endian): magic ``LIC`` (3 bytes), format version (1), architecture code (1), flags (1; bit 0:
coded with the exact integer decoder side), model fingerprint (the first 4 bytes of the weights file's
sha256), rate level (1), image height and width (2 each), the integrity CRC-32 (4), CRC-32 of the
coding-table index map (4; 0 for the factorized model, which has none), CRC-32 of the quantised latent
symbols (4). Then each stream but the last as a varint length and its bytes, and the last stream's
bytes; every stream is a whole number of 32-bit words, at least two (the range coder's final state).

The integrity CRC rejects truncated or corrupted files before the range decoder sees them. In format 3
it covers every other header byte and the streams; in format 2 (still decoded) only the header's first
15 bytes and the streams, so a corrupted map CRC there looks like a numerics mismatch. The index map's
CRC, checked before the latent is range decoded, and the symbols' CRC, checked after, catch a decoder
whose numerics disagree with the encoder's instead of returning garbage.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"LIC"
FORMAT_VERSION = 3  # what the encoder writes
READABLE = (2, 3)
ARCHITECTURE_CODES = {"factorized": 1, "hyperprior": 2}
STREAMS = {"factorized": 1, "hyperprior": 2}  # how many streams each architecture writes
EXACT_FLAG = 1
HEADER = struct.Struct(">3sBBB4sBHHIII")
CRC_FIELD = slice(15, 19)  # the integrity CRC's bytes in the header
WORD = 4  # compressai's range coder writes 32-bit words


class BitstreamError(ValueError):
    """A lic bitstream that cannot be decoded: truncated, corrupted, foreign or for another model."""


class NumericsMismatch(BitstreamError):
    """The decoder's index map or symbols differ from the encoder's: their numerics disagree."""


@dataclass(frozen=True)
class Header:
    architecture: str
    exact: bool  # coded with the integer decoder side
    weights_id: bytes  # first 4 bytes of the weights file's sha256
    level: int
    height: int
    width: int
    streams_crc: int
    indexes_crc: int
    symbols_crc: int
    version: int = FORMAT_VERSION


def map_crc(values: np.ndarray) -> int:
    """CRC-32 of an integer map (index map or latent symbols) as little-endian int32."""
    return zlib.crc32(np.ascontiguousarray(values, dtype="<i4").tobytes())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while offset < len(data) and shift < 35:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    raise BitstreamError("truncated or corrupt stream length")


def signed(header: bytes, version: int) -> bytes:
    """The header bytes the integrity CRC covers (before the streams) in format ``version``."""
    return header[: CRC_FIELD.start] + (header[CRC_FIELD.stop : HEADER.size] if version >= 3 else b"")


def pack(header: Header, streams: list[bytes]) -> bytes:
    if not (0 < header.height < 65536 and 0 < header.width < 65536):
        raise ValueError(f"lic codes images up to 65535 px a side, not {header.width}x{header.height}")
    if header.version not in READABLE:
        raise ValueError(f"lic bitstream format {header.version} is not one of {READABLE}")
    body = b"".join(_varint(len(s)) + s for s in streams[:-1]) + streams[-1]
    fields = [
        MAGIC,
        header.version,
        ARCHITECTURE_CODES[header.architecture],
        EXACT_FLAG if header.exact else 0,
        header.weights_id,
        header.level,
        header.height,
        header.width,
        0,
        header.indexes_crc,
        header.symbols_crc,
    ]
    fields[8] = zlib.crc32(body, zlib.crc32(signed(HEADER.pack(*fields), header.version)))
    return HEADER.pack(*fields) + body


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse and check a bitstream; raises BitstreamError with the reason."""
    if len(data) < HEADER.size or data[:3] != MAGIC:
        raise BitstreamError("not a lic bitstream (bad magic or shorter than the header)")
    _, version, code, flags, weights_id, level, height, width, streams_crc, indexes_crc, crc = (
        HEADER.unpack_from(data)
    )
    if version not in READABLE:
        raise BitstreamError(f"lic bitstream format {version}; this decoder reads formats 2 and 3")
    names = {v: k for k, v in ARCHITECTURE_CODES.items()}
    if code not in names:
        raise BitstreamError(f"unknown lic architecture code {code}")
    if flags & ~EXACT_FLAG:
        raise BitstreamError(f"unknown lic header flags {flags:#x}")
    if not height or not width:
        raise BitstreamError("image size 0 in the header")
    body = data[HEADER.size :]
    if zlib.crc32(body, zlib.crc32(signed(data, version))) != streams_crc:
        raise BitstreamError("lic bitstream is truncated or corrupted (stream CRC mismatch)")
    streams, offset = [], 0
    for _ in range(STREAMS[names[code]] - 1):
        length, offset = _read_varint(body, offset)
        if offset + length > len(body):
            raise BitstreamError("truncated stream")
        streams.append(body[offset : offset + length])
        offset += length
    streams.append(body[offset:])
    if any(len(s) < 2 * WORD or len(s) % WORD for s in streams):
        lengths = ", ".join(str(len(s)) for s in streams)
        raise BitstreamError(
            f"lic stream lengths {lengths} are not whole numbers of 32-bit words, at least 2"
        )
    exact = bool(flags & EXACT_FLAG)
    header = Header(
        names[code], exact, weights_id, level, height, width, streams_crc, indexes_crc, crc, version
    )
    return header, streams
