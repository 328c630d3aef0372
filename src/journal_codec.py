"""Ceph's binary encoding of a journal's header values, decoded. Standard library only.

rbd_bulk.py reads an image journal's header object (its omap) to tell how far each mirror peer
is behind the writer, without an `rbd journal status` process per image. The values are
`cls::journal::Client` structs in Ceph's encoding (little-endian, each struct behind an
ENCODE_START header of version, compat version and length); this decodes what the journal guard
needs. Checked against `rbd journal status` on the lab (tests/functional/test_ways_back.py).
"""

from __future__ import annotations

import struct


class _Decoder:
    """Ceph's little-endian encoding, as far as a journal header's omap values need it."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def _take(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def u8(self) -> int:
        return self._take("B")[0]

    def u32(self) -> int:
        return self._take("I")[0]

    def position(self) -> tuple[int, int, int]:
        """An ObjectPosition: (object_number, tag_tid, entry_tid)."""
        end = self.start()
        number, tag, entry = self._take("QQQ")
        self.at = end
        return number, tag, entry

    def blob(self) -> bytes:
        size = self.u32()
        self.at += size
        return self.data[self.at - size : self.at]

    def start(self) -> int:
        """ENCODE_START's header (version, compat, length); the offset where the struct ends."""
        self.u8()
        self.u8()
        length = self.u32()
        return self.at + length


def journal_client(raw: bytes) -> tuple[str, list[tuple[int, int, int]], int]:
    """A journal client (cls::journal::Client): id, commit positions, state (0 = connected).

    Positions are (object_number, tag_tid, entry_tid), most recent first.
    """
    dec = _Decoder(raw)
    end = dec.start()
    client_id = dec.blob().decode()
    dec.blob()  # the client's opaque data (for rbd-mirror: its sync state)
    position_end = dec.start()
    positions = [dec.position() for _ in range(dec.u32())]
    dec.at = position_end
    state = dec.u8() if dec.at < end else 0
    return client_id, positions, state
