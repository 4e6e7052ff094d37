"""Partition plan: which block of the (padded) volume each rank of a (pz, py, px) grid owns.

Like a Mesh-TensorFlow layout, the three spatial axes map onto the three axes of the device mesh.
Every block boundary is a multiple of 2**depth, so pooling, strided convolutions and transposed
convolutions line up across ranks; the volume is padded once, at the far border, to a multiple of
2**depth, which makes the padded shape independent of the grid (the whole-volume reference pads
the same way).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


class PartitionError(ValueError):
    """The requested grid cannot partition this volume."""


AXES = "zyx"


def _split_units(units: int, parts: int) -> list[int]:
    # Equal blocks of `b` units with the remainder in the last block keep every boundary on a
    # multiple of b, so an output chunk of b units never straddles two ranks.
    b = math.ceil(units / parts)
    if (parts - 1) * b >= units:
        b = units // parts
    return [b] * (parts - 1) + [units - (parts - 1) * b]


@dataclass(frozen=True)
class PartitionPlan:
    shape: tuple[int, int, int]
    grid: tuple[int, int, int]
    multiple: int = 1

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        grid = tuple(int(g) for g in self.grid)
        if len(shape) != 3:
            raise PartitionError(f"volume must be 3D (Z, Y, X), got shape {shape}")
        if len(grid) != 3 or min(grid) < 1:
            raise PartitionError(f"grid must be three positive integers (pz, py, px), got {self.grid}")
        if self.multiple < 1 or self.multiple & (self.multiple - 1):
            raise PartitionError(f"block multiple must be a power of two, got {self.multiple}")
        for ax, (s, g) in enumerate(zip(shape, grid)):
            units = math.ceil(s / self.multiple)
            if units < g:
                raise PartitionError(
                    f"grid {grid} is larger than the volume {shape} along {AXES[ax]}: "
                    f"{s} voxels give only {units} block(s) of {self.multiple} voxels (2**depth) "
                    f"for {g} ranks; use fewer ranks along {AXES[ax]} or a shallower network")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "grid", grid)

    @property
    def world_size(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def padded(self) -> tuple[int, int, int]:
        m = self.multiple
        return tuple(math.ceil(s / m) * m for s in self.shape)

    def bounds(self, axis: int) -> list[tuple[int, int]]:
        m = self.multiple
        sizes = _split_units(self.padded[axis] // m, self.grid[axis])
        out, start = [], 0
        for u in sizes:
            out.append((start, start + u * m))
            start += u * m
        return out

    @property
    def chunks(self) -> tuple[int, int, int]:
        """Output chunk size per axis; every block is a whole number of chunks."""
        return tuple(self.bounds(a)[0][1] for a in range(3))

    def coords(self, rank: int) -> tuple[int, int, int]:
        if not 0 <= rank < self.world_size:
            raise PartitionError(f"rank {rank} outside the grid {self.grid}")
        pz, py, px = self.grid
        return rank // (py * px), (rank // px) % py, rank % px

    def rank_of(self, coords) -> int:
        pz, py, px = self.grid
        return (coords[0] * py + coords[1]) * px + coords[2]

    def block(self, rank: int) -> tuple[slice, slice, slice]:
        """The rank's block in padded coordinates."""
        c = self.coords(rank)
        return tuple(slice(*self.bounds(a)[c[a]]) for a in range(3))

    def valid_block(self, rank: int) -> tuple[slice, slice, slice]:
        """The rank's block clipped to the original (unpadded) volume."""
        return tuple(slice(min(s.start, n), min(s.stop, n)) for s, n in zip(self.block(rank), self.shape))

    def neighbour(self, rank: int, axis: int, step: int) -> int | None:
        c = list(self.coords(rank))
        c[axis] += step
        if not 0 <= c[axis] < self.grid[axis]:
            return None
        return self.rank_of(c)

    def ranks(self):
        return range(self.world_size)

    def all_blocks(self):
        return [self.block(r) for r in self.ranks()]


AUTO = "auto"


def parse_grid(text: str | tuple | list) -> tuple[int, int, int] | str:
    """'2,2,2' / '2x2x2' / '4' (= 4 ranks along z) -> (pz, py, px); 'auto' -> AUTO (the engine
    chooses: see runner.auto_grid)."""
    if isinstance(text, (tuple, list)):
        vals = [int(v) for v in text]
    else:
        if str(text).strip().lower() == AUTO:
            return AUTO
        try:
            vals = [int(v) for v in str(text).replace("x", ",").split(",") if v.strip()]
        except ValueError:
            raise PartitionError(f"grid must look like PZ,PY,PX (e.g. 2,2,2) or auto, got {text!r}") from None
    if len(vals) == 1:
        vals = vals + [1, 1]
    if len(vals) != 3 or min(vals) < 1:
        raise PartitionError(f"grid must be 1 or 3 positive integers, got {text!r}")
    return tuple(vals)


def factor_grid(world: int, shape, multiple: int = 1) -> tuple[int, int, int] | None:
    """A grid of `world` ranks whose blocks are as close to cubes as possible, among those that
    give every rank at least one block of `multiple` voxels per axis; None if none does."""
    best, best_cost = None, None
    units = [math.ceil(s / multiple) for s in shape]
    # on a tie, more ranks along z: slabs read whole z-chunks of a zarr volume
    for pz, py in itertools.product(range(world, 0, -1), repeat=2):
        if world % (pz * py):
            continue
        g = (pz, py, world // (pz * py))
        if any(u < p for u, p in zip(units, g)):
            continue
        block = [s / p for s, p in zip(shape, g)]
        cost = sum(block) / min(block)  # surface-ish: favours cubic blocks, fewer halo voxels
        if best_cost is None or cost < best_cost:
            best, best_cost = g, cost
    return best
