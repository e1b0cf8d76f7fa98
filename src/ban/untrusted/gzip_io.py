"""Bounded gzip decompression: a stream may not decode to more than its caller asks for."""

from __future__ import annotations

import zlib
from pathlib import Path

from ban.errors import BanError

_CHUNK = 1 << 20


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def gunzip_prefix(data: bytes, limit: int, source: Path) -> bytes:
    """The first `limit` decompressed bytes of gzip `data` (fewer when the stream is shorter).

    Decompression stops at `limit`, so a gzip bomb costs at most `limit` bytes of memory.
    """
    out: list[bytes] = []
    size = 0
    rest = data
    try:
        while rest and size < limit:
            d = zlib.decompressobj(wbits=31)  # gzip wrapper; one object per gzip member
            pending = rest
            while pending and size < limit:
                chunk = d.decompress(pending, min(_CHUNK, limit - size))
                out.append(chunk)
                size += len(chunk)
                pending = d.unconsumed_tail
                if d.eof:
                    break
            if not d.eof:
                if size >= limit:
                    break
                raise BanError(f"{source} is a truncated gzip file; re-download or re-compress it")
            rest = d.unused_data
    except zlib.error as exc:
        raise BanError(f"{source} is a corrupt gzip file ({exc}); re-download or re-compress it") from exc
    return b"".join(out)[:limit]
