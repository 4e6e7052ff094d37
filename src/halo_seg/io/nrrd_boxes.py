"""A NRRD's voxels box by box, where ITK reads a NRRD only whole: an uncompressed one (`encoding:
raw`, 3D Slicer with Compress unticked, teem's `unu`) is memory-mapped, a gzip one (3D Slicer's
default) is read from checkpoints in its compressed stream kept as it is first read (ZlibStream,
zran's way), so a halo rank or a tile band decompresses what it needs and holds its box alone.
The header's own fields say where the voxels lie (attached after the header, or in one detached
data file, after its line and byte skips) and in which byte order; the shape, type and components
are ITK's (io.itk_image reads the header with ITK first). A MetaImage's boxes are read here too
(io.itk_image.metaimage_boxes): uncompressed by RawBoxes, compressed by ZlibBoxes."""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .volume import VolumeError, check_length, damaged


def nrrd_fields(path: Path) -> tuple[dict, int]:
    """A NRRD header's fields (lower-case keys, spaces dropped: "data file" and "datafile" alike) and
    the offset just past it, where attached voxels start."""
    fields, offset = {}, 0
    with open(path, "rb") as f:
        for n in range(1000):   # a header is a few dozen lines; past that, not one (read whole, as ITK can)
            line = f.readline(65536)
            offset += len(line)
            text = line.decode("latin-1").rstrip("\r\n")
            if not line or not text:   # the blank line that ends the header (or a detached header's end)
                return fields, offset
            if n == 0 or text.startswith("#") or ":=" in text:   # magic, comments, key/value pairs
                continue
            key, colon, value = text.partition(": ")
            if colon:
                fields[key.replace(" ", "").lower()] = value.strip()
    return {}, 0


GZIP = ("gzip", "gz")


def nrrd_boxes(path: Path, shape: tuple, dtype, components: int):
    """The reader of this NRRD's boxes (RawBoxes or GzipBoxes), else None (bzip2 or text, a list
    of data files, a component axis other than the fastest, skips inside a gzip stream: ITK reads
    such a file whole); a VolumeError where the data file is missing or, uncompressed, cut short."""
    if ".nrrd" not in path.name.lower() and path.suffix.lower() != ".nhdr":
        return None
    fields, end = nrrd_fields(path)
    kinds = fields.get("kinds", "").lower().split()
    spatial = ("domain", "space", "time", "???", "none")
    encoding = fields.get("encoding", "").lower()
    if encoding not in ("raw",) + GZIP or (components > 1) != (int(fields.get("dimension", 0)) == 4) \
            or (components > 1 and (not kinds or kinds[0] in spatial)):
        return None
    stored = np.dtype(dtype)
    if stored.itemsize > 1:
        endian = fields.get("endian", "").lower()
        if endian not in ("little", "big"):
            return None
        stored = stored.newbyteorder("<" if endian == "little" else ">")
    data = fields.get("datafile", "")
    if data and (data.upper().startswith("LIST") or len(data.split()) > 1 or "%" in data):
        return None
    file, start = (path.parent / data, 0) if data else (path, end)
    if not file.is_file():
        raise VolumeError(f"{path}: its data file {file} is missing")
    nbytes = int(np.prod(shape)) * stored.itemsize
    try:
        line_skip, byte_skip = int(fields.get("lineskip", 0)), int(fields.get("byteskip", 0))
    except ValueError:
        return None
    if encoding in GZIP:   # skips inside or around a compressed stream: rare, and ITK's to read
        return GzipBoxes(str(file), start, shape, stored, components) if not (line_skip or byte_skip) else None
    if line_skip:
        with open(file, "rb") as f:
            f.seek(start)
            for _ in range(line_skip):
                f.readline()
            start = f.tell()
    if byte_skip < -1:
        return None
    start = file.stat().st_size - nbytes if byte_skip == -1 else start + byte_skip   # -1: the voxels end the file
    check_length(path, file, start, nbytes)
    return RawBoxes(str(file), start, shape, stored, components)


# a file's dask chunks: whole rows (x), up to ROWS of them (all of them from a compressed stream, read
# a whole slice at a time), so that each slice's part is one run in the file (a 128^3 box read at a
# quarter of the speed; a rank split along y reads its rows), and as many slices as make CHUNK_BYTES
CHUNK_BYTES, ROWS = 4 * 2 ** 20, 256


def boxes_array(boxes, path: Path, kind: str):
    """``boxes`` (RawBoxes, GzipBoxes, ZlibBoxes) of the file ``path`` as a dask array of chunks,
    each read one box at a time; named by ``kind``, the file and its data file's state (a file
    rewritten in place is not taken for the old one)."""
    import dask.array as da
    from dask.base import tokenize
    shape, components = boxes.shape, boxes.components
    rows = shape[-2] if isinstance(boxes, GzipBoxes) else min(shape[-2], ROWS)
    part = rows * shape[-1] * boxes.dtype.itemsize * components   # of a slice: one run in the file
    chunks = [(components,)] * (components > 1) + [max(1, min(shape[-3], CHUNK_BYTES // max(part, 1))), rows,
                                                    shape[-1]]
    stats = [(p.stat().st_mtime_ns, p.stat().st_size) for p in {Path(path), Path(boxes.path)}]
    return da.from_array(boxes, chunks=tuple(chunks), name=f"{kind}-{tokenize(str(path), sorted(stats))}",
                         meta=np.empty((0,) * len(shape), boxes.dtype), asarray=False, fancy=False)


class _Boxes:
    """A NRRD's voxels (``stored``: their type in the file's byte order, from ``offset`` in ``path``;
    for a compressed stream, from ``skip`` in what it decompresses to) as an array dask slices:
    (Z, Y, X), or (C, Z, Y, X) for a file of several components (stored fastest). Holds the path
    alone, so it pickles to other processes."""

    def __init__(self, path: str, offset: int, shape: tuple, stored, components: int, skip: int = 0):
        self.path, self.offset, self.shape, self.stored = path, int(offset), tuple(shape), np.dtype(stored)
        self.skip = int(skip)
        self.dtype = self.stored.newbyteorder("=")   # what it hands out: this machine's byte order
        self.components, self.ndim = components, len(self.shape)

    def _file_order(self) -> tuple:
        return self.shape[1:] + (self.components,) if self.components > 1 else self.shape

    def _pick(self, arr: np.ndarray, key, copy: bool = True) -> np.ndarray:
        """``key`` of the file-ordered ``arr``, in this machine's byte order: a copy (``copy``), else
        a view where it already is (of a buffer read for this box alone)."""
        view = np.moveaxis(arr, -1, 0) if self.components > 1 else arr
        return np.array(view[key], dtype=self.dtype, copy=True if copy else None)


class RawBoxes(_Boxes):
    """An uncompressed NRRD: each index maps the file and copies out its box, so only that box's
    pages are read."""

    def __getitem__(self, key):
        return self._pick(np.memmap(self.path, self.stored, "r", self.offset, self._file_order()), key)


# (path, offset, mtime, size) -> (ZlibStream, lock), the most recently used last: each keeps
# its checkpoints in the stream; several, since a run may read several files in turn (a scan and
# its labels, a case's channels), and one is closed only under its lock, never in the middle of a read
_open_streams: OrderedDict = OrderedDict()
_streams_lock = threading.Lock()
KEPT_STREAMS = 8


class GzipBoxes(_Boxes):
    """A gzip NRRD (or a .nii.gz, whose voxels start ``skip`` bytes into its stream): each index
    decompresses the slices its box spans through a ZlibStream kept per process (its checkpoints in
    the stream grow as it is read, so a later box starts near its data), and hands out the box."""

    def _open(self):
        return ZlibStream(self.path, self.offset, gzip=True)

    def _stream(self):
        st = Path(self.path).stat()
        key = (self.path, self.offset, st.st_mtime_ns, st.st_size)
        with _streams_lock:
            if key not in _open_streams:
                _open_streams[key] = (self._open(), threading.Lock())
                while len(_open_streams) > KEPT_STREAMS:
                    stream, lock = _open_streams.popitem(last=False)[1]
                    with lock:
                        stream.close()
            _open_streams.move_to_end(key)
            return _open_streams[key]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        zkey = key[1] if self.components > 1 else key[0]   # the slices it spans, read whole
        n = self.shape[-3]
        zs = np.arange(n)[zkey]
        z0, z1 = (int(zs.min()), int(zs.max()) + 1) if np.size(zs) else (0, 0)
        order = self._file_order()
        plane = int(np.prod(order[1:])) * self.stored.itemsize
        try:
            while True:
                stream, lock = self._stream()
                with lock:
                    if stream.closed:   # closed by another thread, for another file, since: open it again
                        continue
                    stream.seek(self.skip + z0 * plane)
                    raw = stream.read((z1 - z0) * plane)
                    break
        except Exception as exc:   # zlib's: a stream damaged
            raise damaged(self.path, exc) from None
        if len(raw) != (z1 - z0) * plane:
            raise VolumeError(f"{self.path} is truncated: its compressed stream ends in slice {z0 + len(raw) // plane} "
                              f"of {n} (an interrupted copy or download?)")
        slab = np.frombuffer(raw, self.stored).reshape((z1 - z0,) + order[1:])
        local = zs - z0 if isinstance(zs, np.ndarray) else int(zs) - z0
        return self._pick(slab, (key[0], local) + key[2:] if self.components > 1 else (local,) + key[1:], copy=False)


class ZlibBoxes(GzipBoxes):
    """A compressed MetaImage (one zlib stream, no gzip framing): as GzipBoxes."""

    def _open(self):
        return ZlibStream(self.path, self.offset)


class ZlibStream:
    """A zlib stream (``gzip``: a gzip file, its members in turn) read from any position, as zran
    (and so indexed_gzip) reads gzip: decompressed forward from the last checkpoint at or before it,
    where a checkpoint is a copy of the decompressor's state (zlib's own ``Decompress.copy``: its
    32 KiB window and where it stands in the input), taken at every multiple of ``SPACING`` bytes of
    output as the stream is first read. A later box then decompresses at most ``SPACING`` bytes it
    does not want, not all that precede it; zlib in C does the work, about twice as fast as
    indexed_gzip here (benchmarks/README.md)."""

    SPACING = 2 * 2 ** 20
    IN = 2 ** 18   # compressed bytes read at a time

    def __init__(self, path: str, offset: int, gzip: bool = False):
        import os
        import zlib
        self.path, self.pid = path, os.getpid()
        self.f, self.offset, self.pos, self.closed = open(path, "rb"), int(offset), 0, False
        self.wbits = 16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS
        self.points = [(0, 0, zlib.decompressobj(self.wbits))]   # (output position, input position, state there)

    def seek(self, pos: int) -> int:
        self.pos = int(pos)
        return self.pos

    def read(self, n: int) -> bytes:
        """``n`` bytes from the position (fewer where the stream ends first)."""
        import bisect
        import os
        import zlib
        if os.getpid() != self.pid:   # a forked process: its own file, not one position shared with its parent
            self.f, self.pid = open(self.path, "rb"), os.getpid()
        start, end = self.pos, self.pos + int(n)
        at = bisect.bisect_right([p[0] for p in self.points], start) - 1
        out, inp, state = self.points[at]
        d, buf = state.copy(), b""
        got, filled = bytearray(max(int(n), 0)), 0   # written in place: no copy of each piece, then of their join
        self.f.seek(self.offset + inp)
        while out < end:
            if not buf:
                buf = self.f.read(self.IN)
                if not buf:
                    break   # the file ends before the stream: the caller says it is truncated
            # never past the box's end, nor past the next multiple of SPACING, where a checkpoint goes
            # (so that boxes on that grid, chunks of whole slices, start at one)
            piece = d.decompress(buf, min(end - out, (out // self.SPACING + 1) * self.SPACING - out))
            rest = d.unused_data if d.eof else d.unconsumed_tail
            inp += len(buf) - len(rest)
            buf = rest
            if piece:
                lo, hi = max(start, out), min(end, out + len(piece))
                if hi > lo:
                    got[lo - start:hi - start] = memoryview(piece)[lo - out:hi - out]
                    filled = hi - start
                out += len(piece)
            if d.eof:   # a gzip file's next member, if it has one (zlib's gzread, and so ITK, reads on)
                if self.wbits == zlib.MAX_WBITS or (not buf and not self.f.read(1)):
                    break
                self.f.seek(self.offset + inp)
                d, buf = zlib.decompressobj(self.wbits), b""
            if out % self.SPACING == 0 and out > self.points[-1][0]:   # past the last checkpoint: a new one
                self.points.append((out, inp, d.copy()))
        self.pos = start + filled
        return got if filled == len(got) else got[:filled]

    def close(self):
        self.closed = True
        self.f.close()
