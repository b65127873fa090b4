"""A uniform cell grid over the streets that answers most geotag lookups without geometry.

Every cell of the grid gets one state, precomputed from the (projected) street polygons:

* ``>= 0`` — no street boundary touches the cell and it lies inside that street: any point in the
  cell belongs to it, so the answer is one array read;
* ``FAR`` — no street's bounding box comes within the tolerance of the cell: the answer is "none";
* ``<= CHECK`` — cell number ``k = CHECK - state`` needs geometry: first its point candidates
  (streets whose bounding box covers the cell; empty when no boundary touches the cell) are tested
  for containment, lowest street index first; failing that, its near candidates (streets whose
  bounding box grown by the tolerance covers the cell) are measured for the nearest.

A point belongs to cell (floor(fx), floor(fy)) with fx = (x - x0)·inv_cell; callers must compute it
with exactly that expression so that the single and batch paths agree bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.lib.stride_tricks import sliding_window_view

FAR = -1
CHECK = -2  # state CHECK - k means "check cell number k"

# Cells per grid; 4 M int32 states are 16 MB and give cells of about 230 m over Chongqing.
DEFAULT_TARGET_CELLS = 4_000_000
# Cells are marked with this slack (in cells) so that float error never leaves one unmarked.
_EDGE_SLACK_CELLS = 1e-6


@dataclass(frozen=True, slots=True, eq=False)
class CellGrid:
    """Precomputed per-cell answers for points in a local metric plane."""

    x0: float
    y0: float
    inv_cell: float
    nx: int
    ny: int
    states: np.ndarray  # int32, row-major (row = y cell), length nx * ny
    # CSR lists per check cell k: streets[offsets[k]:offsets[k + 1]], ascending street indices.
    point_offsets: np.ndarray
    point_streets: np.ndarray
    near_offsets: np.ndarray
    near_streets: np.ndarray

    @property
    def cell_size(self) -> float:
        """Edge length of a cell in plane units."""
        return 1.0 / self.inv_cell


def build_grid(
    polygons: np.ndarray, tolerance: float, target_cells: int = DEFAULT_TARGET_CELLS
) -> CellGrid:
    """Rasterise the street polygons (plane coordinates) into a cell grid."""
    minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(polygons))
    # Sized with the tolerance margin included, so a tiny city cannot ask for a huge grid.
    width, height = maxx - minx + 2 * tolerance, maxy - miny + 2 * tolerance
    cell = max(math.sqrt(max(width, 1e-6) * max(height, 1e-6) / target_cells), 1e-6)
    # The margin makes "outside the grid" imply "farther than the tolerance from every street".
    margin = tolerance + cell
    x0, y0 = minx - margin, miny - margin
    nx = math.ceil((maxx - minx + 2 * margin) / cell) + 1
    ny = math.ceil((maxy - miny + 2 * margin) / cell) + 1
    inv = 1.0 / cell

    seg_street, fxa, fya, fxb, fyb = _segments(polygons, x0, y0, inv)
    border = _mark_boundary_cells(fxa, fya, fxb, fyb, nx, ny)
    label = _label_cell_centres(seg_street, fxa, fya, fxb, fyb, nx, ny, len(polygons))
    occupied = border | (label >= 0)
    reach = math.floor(tolerance * inv) + 1
    near = _dilate(occupied.reshape(ny, nx), reach).ravel() & ~occupied

    check = np.flatnonzero(border | near)
    near_slot, near_street = _candidates(polygons, check, tolerance, x0, y0, inv, nx, ny)
    # A cell with no street's grown bounding box over it is far after all.
    keep = border[check] | (np.bincount(near_slot, minlength=check.size) > 0)
    renumber = np.cumsum(keep) - 1
    check = check[keep]
    near_slot = renumber[near_slot]
    point_slot, point_street = _candidates(polygons, check, 0.0, x0, y0, inv, nx, ny)
    on_border = border[check][point_slot]
    point_slot, point_street = point_slot[on_border], point_street[on_border]

    states = np.full(nx * ny, FAR, dtype=np.int32)
    pure = ~border & (label >= 0)
    states[pure] = label[pure]
    states[check] = CHECK - np.arange(check.size, dtype=np.int32)
    point_offsets = _offsets(point_slot, check.size)
    near_offsets = _offsets(near_slot, check.size)
    return CellGrid(
        x0, y0, inv, nx, ny, states, point_offsets, point_street, near_offsets, near_street
    )


def _offsets(slot: np.ndarray, n_slots: int) -> np.ndarray:
    offsets = np.zeros(n_slots + 1, dtype=np.int64)
    np.cumsum(np.bincount(slot, minlength=n_slots), out=offsets[1:])
    return offsets


def _segments(
    polygons: np.ndarray, x0: float, y0: float, inv: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every ring segment in cell units, with the index of its street."""
    parts, part_street = shapely.get_parts(polygons, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    fx = (coords[:, 0] - x0) * inv
    fy = (coords[:, 1] - y0) * inv
    # Consecutive coordinates of one ring form a segment (rings are closed, so no wrap-around).
    same = coord_ring[1:] == coord_ring[:-1]
    street = part_street[ring_part[coord_ring[:-1][same]]]
    return street, fx[:-1][same], fy[:-1][same], fx[1:][same], fy[1:][same]


def _mark_boundary_cells(
    fxa: np.ndarray, fya: np.ndarray, fxb: np.ndarray, fyb: np.ndarray, nx: int, ny: int
) -> np.ndarray:
    """Cells touched by any segment (conservatively: a hair too many, never too few)."""
    # Split segments into pieces at most one cell long, so each piece spans at most 3×3 cells.
    length = np.maximum(np.abs(fxb - fxa), np.abs(fyb - fya))
    pieces = np.maximum(np.ceil(length), 1).astype(np.int64)
    seg = np.repeat(np.arange(fxa.size), pieces)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    k = np.arange(seg.size) - first
    t0 = k / pieces[seg]
    t1 = (k + 1) / pieces[seg]
    dx, dy = fxb[seg] - fxa[seg], fyb[seg] - fya[seg]
    xa, xb = fxa[seg] + dx * t0, fxa[seg] + dx * t1
    ya, yb = fya[seg] + dy * t0, fya[seg] + dy * t1
    i0 = np.floor(np.minimum(xa, xb) - _EDGE_SLACK_CELLS).astype(np.int64)
    i1 = np.floor(np.maximum(xa, xb) + _EDGE_SLACK_CELLS).astype(np.int64)
    j0 = np.floor(np.minimum(ya, yb) - _EDGE_SLACK_CELLS).astype(np.int64)
    j1 = np.floor(np.maximum(ya, yb) + _EDGE_SLACK_CELLS).astype(np.int64)
    mixed = np.zeros(nx * ny, dtype=bool)
    for di in range(3):
        for dj in range(3):
            i, j = i0 + di, j0 + dj
            ok = (i <= i1) & (j <= j1)
            mixed[j[ok] * nx + i[ok]] = True
    return mixed


def _label_cell_centres(
    street: np.ndarray,
    fxa: np.ndarray,
    fya: np.ndarray,
    fxb: np.ndarray,
    fyb: np.ndarray,
    nx: int,
    ny: int,
    n_streets: int,
) -> np.ndarray:
    """For each cell centre, the lowest index of a street containing it (even-odd scanlines)."""
    lo, hi = np.minimum(fya, fyb), np.maximum(fya, fyb)
    # Row j's centre line is y = j + 0.5; a segment crosses it when lo <= j + 0.5 < hi.
    row_start = np.ceil(lo - 0.5).astype(np.int64)
    rows = np.maximum(np.ceil(hi - 0.5).astype(np.int64) - row_start, 0)
    seg = np.repeat(np.arange(fxa.size), rows)
    row = np.repeat(row_start, rows) + (
        np.arange(seg.size) - np.repeat(np.cumsum(rows) - rows, rows)
    )
    yc = row + 0.5
    x = fxa[seg] + (yc - fya[seg]) * (fxb[seg] - fxa[seg]) / (fyb[seg] - fya[seg])
    s = street[seg]
    order = np.lexsort((x, row, s))
    # Each (street, row) group holds an even number of crossings; consecutive pairs bound insides.
    x, row, s = x[order].reshape(-1, 2), row[order][::2], s[order][::2]
    i_start = np.clip(np.floor(x[:, 0] - 0.5).astype(np.int64) + 1, 0, nx)
    i_stop = np.clip(np.ceil(x[:, 1] - 0.5).astype(np.int64), 0, nx)
    width = np.maximum(i_stop - i_start, 0)
    span = np.repeat(np.arange(width.size), width)
    i = np.repeat(i_start, width) + (
        np.arange(span.size) - np.repeat(np.cumsum(width) - width, width)
    )
    label = np.full(nx * ny, n_streets, dtype=np.int64)
    # Overlapping streets (allowed across districts) resolve to the lowest index, as elsewhere.
    np.minimum.at(label, row[span] * nx + i, s[span])
    label[label == n_streets] = -1
    return label


def _dilate(mask: np.ndarray, reach: int) -> np.ndarray:
    """Cells within `reach` cells (Chebyshev) of a set cell."""
    window = 2 * reach + 1
    padded = np.pad(mask, reach)
    rows = sliding_window_view(padded, window, axis=1).any(axis=-1)
    return np.asarray(sliding_window_view(rows, window, axis=0).any(axis=-1))


def _candidates(
    polygons: np.ndarray,
    cells: np.ndarray,
    reach: float,
    x0: float,
    y0: float,
    inv: float,
    nx: int,
    ny: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (cell slot, street) pairs where the street's bbox grown by `reach` meets the cell."""
    bounds = shapely.bounds(polygons)
    grow = reach * inv + _EDGE_SLACK_CELLS
    i0 = np.clip(np.floor((bounds[:, 0] - x0) * inv - grow), 0, nx - 1).astype(np.int64)
    j0 = np.clip(np.floor((bounds[:, 1] - y0) * inv - grow), 0, ny - 1).astype(np.int64)
    i1 = np.clip(np.floor((bounds[:, 2] - x0) * inv + grow), 0, nx - 1).astype(np.int64)
    j1 = np.clip(np.floor((bounds[:, 3] - y0) * inv + grow), 0, ny - 1).astype(np.int64)
    # Slot of each grid cell in `cells` (ascending), or -1.
    slot_of = np.full(nx * ny, -1, dtype=np.int32)
    slot_of[cells] = np.arange(cells.size, dtype=np.int32)
    slot_grid = slot_of.reshape(ny, nx)
    slots: list[np.ndarray] = []
    streets: list[np.ndarray] = []
    for s in range(len(polygons)):
        block = slot_grid[j0[s] : j1[s] + 1, i0[s] : i1[s] + 1]
        found = block[block >= 0]
        slots.append(found)
        streets.append(np.full(found.size, s, dtype=np.int32))
    slot = np.concatenate(slots).astype(np.int64)
    street = np.concatenate(streets)
    order = np.lexsort((street, slot))
    return slot[order], street[order]
