"""The image size a bitstream's header claims, read without decoding, and the check against the expected one.

Decoders allocate what a header claims; a header from someone else's run directory may claim anything.
``check_size`` compares a claim with the (height, width) the caller expects (run store, manifest);
``check_header`` reads the claim of a JPEG, JPEG 2000, WebP, JPEG XL, AVIF/HEIC or BPG bitstream first.
Only the standard library here: bench.lic imports it too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

Size = tuple[int, int]  # (height, width)


class HeaderError(ValueError):
    """A header that cannot be read, or that claims another image size than the expected one."""


def check_size(what: str, claimed: Size, expected: Size, error: type[Exception] = HeaderError) -> None:
    """Raise ``error`` when ``claimed`` (height, width) is not ``expected``; messages say width x height."""
    height, width = (int(v) for v in claimed)
    want_height, want_width = (int(v) for v in expected)
    if (height, width) != (want_height, want_width):
        raise error(f"{what} claims {width}x{height}, expected {want_width}x{want_height}")


def check_header(data: bytes, kind: str, expected: Size) -> None:
    """Refuse ``data`` (the start of a ``kind`` file) unless its header claims the ``expected`` size."""
    check_size(f"{kind} header", claimed_size(data, kind), expected)


def claimed_size(data: bytes, kind: str) -> Size:
    """The (height, width) the header of ``data`` claims, a ``kind`` file (a key of PARSERS)."""
    try:
        return PARSERS[kind](data)
    except (IndexError, struct.error):
        raise HeaderError(f"{kind} header unreadable: truncated") from None
    except HeaderError as exc:
        raise HeaderError(f"{kind} header unreadable: {exc}") from None


def _u16(data: bytes, offset: int) -> int:
    return struct.unpack_from(">H", data, offset)[0]


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from(">I", data, offset)[0]


def jpeg(data: bytes) -> Size:
    """Y and X of the first start-of-frame segment."""
    if data[:2] != b"\xff\xd8":
        raise HeaderError("no SOI marker")
    offset = 2
    while True:
        if data[offset] != 0xFF:
            raise HeaderError(f"no marker at byte {offset}")
        while data[offset] == 0xFF:  # fill bytes
            offset += 1
        marker = data[offset]
        offset += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker in (0xD9, 0xDA):
            raise HeaderError("no start-of-frame segment before the scan")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = _u16(data, offset + 3), _u16(data, offset + 5)
            if not height:
                raise HeaderError("the height is left to a DNL marker")
            return height, width
        offset += _u16(data, offset)


def boxes(data: bytes, offset: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, content start, content end) of each ISO base media box (also JP2's and JPEG XL's)."""
    end = len(data) if end is None else end
    while offset + 8 <= end:
        size, kind = _u32(data, offset), data[offset + 4 : offset + 8]
        start = offset + 8
        if size == 1:
            size, start = struct.unpack_from(">Q", data, start)[0], start + 8
        elif size == 0:
            size = end - offset
        if size < start - offset or offset + size > end:
            raise HeaderError(f"box {kind!r} at byte {offset} overruns its container")
        yield kind, start, offset + size
        offset += size


def _box(data: bytes, kind: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    for name, begin, stop in boxes(data, start, end):
        if name == kind:
            return begin, stop
    raise HeaderError(f"no {kind.decode()} box")


JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def jpeg2000(data: bytes) -> Size:
    """The image area of the codestream's SIZ segment (inside the jp2c box of a JP2 file)."""
    offset = _box(data, b"jp2c")[0] if data.startswith(JP2_SIGNATURE) else 0
    if data[offset : offset + 4] != b"\xff\x4f\xff\x51":
        raise HeaderError("no codestream starting with SOC and SIZ")
    x, y, x0, y0 = struct.unpack_from(">IIII", data, offset + 8)
    if x <= x0 or y <= y0:
        raise HeaderError("SIZ gives an empty image area")
    return y - y0, x - x0


def webp(data: bytes) -> Size:
    """The canvas of a VP8X chunk, or the frame size of a lone VP8 or VP8L chunk."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise HeaderError("no RIFF/WEBP signature")
    chunk, payload = data[12:16], 20
    if chunk == b"VP8X":
        if len(data) < payload + 10:
            raise IndexError
        width, height = (int.from_bytes(data[payload + i : payload + i + 3], "little") for i in (4, 7))
        return height + 1, width + 1
    if chunk == b"VP8L":
        if data[payload] != 0x2F:
            raise HeaderError("VP8L chunk without its signature")
        bits = struct.unpack_from("<I", data, payload + 1)[0]
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8 ":
        if data[payload + 3 : payload + 6] != b"\x9d\x01\x2a":
            raise HeaderError("VP8 chunk without its start code")
        width, height = struct.unpack_from("<HH", data, payload + 6)
        return height & 0x3FFF, width & 0x3FFF
    raise HeaderError(f"unknown first chunk {chunk!r}")


class _Bits:
    """Bits of ``data`` least significant first, as JPEG XL's codestream is read."""

    def __init__(self, data: bytes):
        self.value, self.position = int.from_bytes(data[:64], "little"), 0
        self.size = 8 * min(len(data), 64)

    def read(self, count: int) -> int:
        if self.position + count > self.size:
            raise IndexError
        value = (self.value >> self.position) & ((1 << count) - 1)
        self.position += count
        return value

    def size_field(self, div8: int) -> int:
        """A dimension of JPEG XL's SizeHeader."""
        if div8:
            return (1 + self.read(5)) * 8
        return 1 + self.read((9, 13, 18, 30)[self.read(2)])


JXL_SIGNATURE = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def jpegxl(data: bytes) -> Size:
    """The SizeHeader of the codestream (in a jxlc or the first jxlp box of a container)."""
    if data.startswith(JXL_SIGNATURE):
        for kind, start, _ in boxes(data):
            if kind in (b"jxlc", b"jxlp"):
                data = data[start + 4 * (kind == b"jxlp") :]  # jxlp starts with its index
                break
        else:
            raise HeaderError("container without a codestream box")
    if data[:2] != b"\xff\x0a":
        raise HeaderError("no codestream signature")
    bits = _Bits(data[2:])
    div8 = bits.read(1)
    height = bits.size_field(div8)
    ratio = bits.read(3)
    if ratio:
        numerator, denominator = JXL_RATIOS[ratio]
        width = height * numerator // denominator
    else:
        width = bits.size_field(div8)
    return height, width


def isobmff(data: bytes) -> Size:
    """The primary item's size (AVIF, HEIC): its ispe property, cropped by a clean aperture (clap, its
    fractions rounded) when it has one. Rotations (irot) are not applied: bench's encoders write none."""
    meta_start, meta_end = _box(data, b"meta")
    meta_start += 4  # a full box: version and flags
    start = _box(data, b"pitm", meta_start, meta_end)[0]
    primary = _u16(data, start + 4) if data[start] == 0 else _u32(data, start + 4)
    iprp = _box(data, b"iprp", meta_start, meta_end)
    properties = [(kind, begin) for kind, begin, _ in boxes(data, *_box(data, b"ipco", *iprp))]
    start = _box(data, b"ipma", *iprp)[0]
    version, wide = data[start], data[start + 3] & 1
    offset = start + 8
    for _ in range(_u32(data, start + 4)):
        item = _u32(data, offset) if version else _u16(data, offset)
        offset += 4 if version else 2
        count, offset = data[offset], offset + 1
        indexes = [
            _u16(data, offset + 2 * i) & 0x7FFF if wide else data[offset + i] & 0x7F for i in range(count)
        ]
        offset += count * (2 if wide else 1)
        if item == primary:
            break
    else:
        raise HeaderError(f"the primary item {primary} has no properties")
    size = None
    for kind, begin in (properties[i - 1] for i in indexes if 0 < i <= len(properties)):
        if kind == b"ispe":
            width, height = struct.unpack_from(">II", data, begin + 4)
            size = height, width
        elif kind == b"clap" and size:
            width_n, width_d, height_n, height_d = struct.unpack_from(">IIII", data, begin)
            if not (width_d and height_d):
                raise HeaderError("clap with a zero denominator")
            size = (height_n + height_d // 2) // height_d, (width_n + width_d // 2) // width_d
    if size is None:
        raise HeaderError("the primary item has no ispe property")
    return size


def _ue7(data: bytes, offset: int) -> tuple[int, int]:
    value = 0
    for _ in range(5):
        byte, offset = data[offset], offset + 1
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            return value, offset
    raise HeaderError("a size field longer than 32 bits")


def bpg(data: bytes) -> Size:
    """picture_width and picture_height of the BPG file header."""
    if data[:4] != b"BPG\xfb":
        raise HeaderError("no BPG magic")
    width, offset = _ue7(data, 6)
    height, _ = _ue7(data, offset)
    return height, width


PARSERS: dict[str, Callable[[bytes], Size]] = {
    "jpeg": jpeg,
    "jpg": jpeg,
    "jp2": jpeg2000,
    "j2k": jpeg2000,
    "webp": webp,
    "jxl": jpegxl,
    "avif": isobmff,
    "heic": isobmff,
    "heif": isobmff,
    "bpg": bpg,
}
