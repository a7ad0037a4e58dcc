"""The WAL frame's layout (see :mod:`framing`), apart from its checks: a reader
that only walks frames (``head``) need not load the CRC library."""

from __future__ import annotations

import struct

MAGIC = b"CHRW"
#: magic, payload length (LE), crc32c of length + payload (LE)
HEADER = struct.Struct("<4sII")
HEADER_SIZE = HEADER.size
