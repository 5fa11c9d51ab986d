"""G4 (ITU-T T.6) coding of a page through libtiff's own codec, called directly.

Pillow reaches the same codec but stores 1-bit images a byte per pixel and packs them again
row by row on the way out, which costs three times libtiff's own work; here the page is
packed once with numpy and handed over as one strip. Uses Debian's libtiff6 when present;
``fax.tiff`` falls back to Pillow otherwise.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

TIFFTAG_IMAGEWIDTH, TIFFTAG_IMAGELENGTH, TIFFTAG_BITSPERSAMPLE = 256, 257, 258
TIFFTAG_COMPRESSION, TIFFTAG_PHOTOMETRIC, TIFFTAG_ROWSPERSTRIP = 259, 262, 278
TIFFTAG_SAMPLESPERPIXEL, TIFFTAG_STRIPBYTECOUNTS, TIFFTAG_STRIPOFFSETS = 277, 279, 273
COMPRESSION_CCITTFAX4, PHOTOMETRIC_MINISWHITE = 4, 0

_ReadWrite = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ssize_t)
_Seek = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int)
_Close = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_Size = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)
_Map = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_Unmap = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)


class _MemoryFile:
    """The bytes libtiff writes, kept in a bytearray (one file at a time per encoder)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0

    def write(self, _h: int | None, buf: int | None, size: int) -> int:
        end = self.pos + size
        if end > len(self.data):
            self.data.extend(b"\0" * (end - len(self.data)))
        self.data[self.pos : end] = ctypes.string_at(buf or 0, size)
        self.pos = end
        return size

    def read(self, _h: int | None, buf: int | None, size: int) -> int:
        chunk = bytes(self.data[self.pos : self.pos + size])
        ctypes.memmove(buf or 0, chunk, len(chunk))
        self.pos += len(chunk)
        return len(chunk)

    def seek(self, _h: int | None, offset: int, whence: int) -> int:
        base = {0: 0, 1: self.pos, 2: len(self.data)}[whence]
        self.pos = base + offset
        return self.pos

    def size(self, _h: int | None) -> int:
        return len(self.data)


class Encoder:
    """libtiff's G4 encoder; ``code(packed, width)`` gives the T.6 code of a page."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self._file = _MemoryFile()
        # The callbacks must live as long as libtiff may call them: as long as self.
        self._procs = (
            _ReadWrite(self._file.read), _ReadWrite(self._file.write), _Seek(self._file.seek),
            _Close(lambda _h: 0), _Size(self._file.size), _Map(lambda _h, _b, _s: 0),
            _Unmap(lambda _h, _b, _s: None),
        )  # fmt: skip
        lib.TIFFClientOpen.restype = ctypes.c_void_p
        lib.TIFFClientOpen.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                       _ReadWrite, _ReadWrite, _Seek, _Close, _Size, _Map,
                                       _Unmap]  # fmt: skip
        lib.TIFFWriteEncodedStrip.restype = ctypes.c_ssize_t
        lib.TIFFWriteEncodedStrip.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p,
                                              ctypes.c_ssize_t]  # fmt: skip
        lib.TIFFClose.argtypes = [ctypes.c_void_p]
        lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
        lib.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
        lib.TIFFSetWarningHandler.restype = ctypes.c_void_p
        lib.TIFFSetWarningHandler.argtypes = [ctypes.c_void_p]
        # libtiff prints errors on stderr by default; failures show in the return codes.
        lib.TIFFSetErrorHandler(None)
        lib.TIFFSetWarningHandler(None)

    def _set(self, tif: int, tag: int, value: int) -> None:
        # Variadic: libtiff reads SHORT and LONG values of these tags as C ints.
        ok = self._lib.TIFFSetField(ctypes.c_void_p(tif), ctypes.c_uint32(tag), ctypes.c_int(value))
        if not ok:
            raise RuntimeError(f"libtiff refused tag {tag}")

    def strip(self, white: np.ndarray) -> bytes:
        """The G4 code of a page (True = white), min-is-white."""
        return self.code(np.packbits(~white, axis=1), white.shape[1])

    def code(self, packed: np.ndarray, width: int) -> bytes:
        """The G4 code of a page packed eight pixels a byte, 1 bits black (min-is-white),
        ``width`` pixels a row."""
        packed = np.ascontiguousarray(packed, np.uint8)
        h = packed.shape[0]
        w = width
        if packed.ndim != 2 or packed.shape[1] != -(-w // 8):
            raise ValueError(f"packed rows of {packed.shape[1]} bytes for {w} pixels")
        with self._lock:
            self._file.data, self._file.pos = bytearray(), 0
            tif = self._lib.TIFFClientOpen(b"page", b"w", None, *self._procs)
            if not tif:
                raise RuntimeError("libtiff could not open a memory file")
            try:
                for tag, value in ((TIFFTAG_IMAGEWIDTH, w), (TIFFTAG_IMAGELENGTH, h),
                                   (TIFFTAG_BITSPERSAMPLE, 1), (TIFFTAG_SAMPLESPERPIXEL, 1),
                                   (TIFFTAG_COMPRESSION, COMPRESSION_CCITTFAX4),
                                   (TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISWHITE),
                                   (TIFFTAG_ROWSPERSTRIP, h)):  # fmt: skip
                    self._set(tif, tag, value)
                written = self._lib.TIFFWriteEncodedStrip(tif, 0, packed.ctypes.data, packed.nbytes)
                if written < 0:
                    raise RuntimeError("libtiff could not code the page")
            finally:
                self._lib.TIFFClose(tif)
            # The file's only strip sits right after the 8-byte header (libtiff writes the
            # strip before the directory); its length is the IFD's StripByteCounts.
            data = bytes(self._file.data)
        return _only_strip(data)


def _only_strip(data: bytes) -> bytes:
    """The single strip of a little-endian classic TIFF."""
    import struct

    if data[:4] != b"II*\0":
        raise RuntimeError("unexpected TIFF from libtiff")
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    offset = length = None
    types = {3: "<H", 4: "<I", 16: "<Q"}
    for i in range(count):
        tag, kind, n, _ = struct.unpack_from("<HHII", data, ifd + 2 + 12 * i)
        if tag in (TIFFTAG_STRIPOFFSETS, TIFFTAG_STRIPBYTECOUNTS) and n == 1 and kind in types:
            (value,) = struct.unpack_from(types[kind], data, ifd + 2 + 12 * i + 8)
            if tag == TIFFTAG_STRIPOFFSETS:
                offset = value
            else:
                length = value
    if offset is None or length is None:
        raise RuntimeError("libtiff wrote no strip")
    return data[offset : offset + length]


def load() -> Encoder | None:
    """The encoder on this machine's libtiff (None when there is none)."""
    for name in ("libtiff.so.6", "libtiff.so.5", "libtiff.so"):
        try:
            return Encoder(ctypes.CDLL(name))
        except OSError:
            continue
    return None
