"""Counting the colours of a PNG screenshot with the standard library only."""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BYTES_PER_PIXEL = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> channels, at 8 bits per channel


def png_rows(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, unfiltered rows) of an 8-bit, non-interlaced PNG."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    offset = len(_SIGNATURE)
    header = None
    compressed = bytearray()
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, bit_depth, colour_type, _, _, interlace = header
    if bit_depth != 8 or interlace != 0 or colour_type not in _BYTES_PER_PIXEL:
        raise ValueError("only 8-bit, non-interlaced grey/RGB(A) PNGs are supported")
    bpp = _BYTES_PER_PIXEL[colour_type]
    raw = zlib.decompress(bytes(compressed))
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        filter_type = raw[start]
        row = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(filter_type, row, previous, bpp)
        rows.append(bytes(row))
        previous = row
    return width, height, bpp, rows


def _unfilter(filter_type: int, row: bytearray, previous: bytearray, bpp: int) -> None:
    if filter_type == 0:
        return
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up = previous[i]
        if filter_type == 1:
            predictor = left
        elif filter_type == 2:
            predictor = up
        elif filter_type == 3:
            predictor = (left + up) // 2
        elif filter_type == 4:
            upper_left = previous[i - bpp] if i >= bpp else 0
            estimate = left + up - upper_left
            distances = (abs(estimate - left), abs(estimate - up), abs(estimate - upper_left))
            predictor = (left, up, upper_left)[distances.index(min(distances))]
        else:
            raise ValueError(f"unknown PNG filter {filter_type}")
        row[i] = (row[i] + predictor) & 0xFF


def distinct_colours(data: bytes) -> int:
    """How many different pixel values the PNG holds."""
    _, _, bpp, rows = png_rows(data)
    colours = set()
    for row in rows:
        colours.update(row[i : i + bpp] for i in range(0, len(row), bpp))
    return len(colours)
