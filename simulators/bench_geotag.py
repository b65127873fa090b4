"""Benchmark the geotagger against a raw shapely baseline on the Chongqing demo map.

Run: python -m simulators.bench_geotag [--points N] [--repeat R]

Points are uniform in the city bounding box (105.287–110.190°E, 28.164–32.212°N), so about 60 %
fall outside every street and some land in the gaps between districts. Each figure is the median
over R runs. The baselines answer only "which street contains the point" (no nearest step, no
district or city), so they are an upper bound on what a plain STRtree approach could do:

* baseline A — the street polygons in WGS84, prepared; `shapely.points` for the inputs;
  `STRtree.query(points)` without a predicate (bounding boxes); `shapely.contains_xy` on the
  candidate pairs; the first hit scattered into a per-point street index;
* baseline B — the same, but `STRtree.query(points, predicate="intersects")` does the exact test
  inside the tree query (the fastest raw method found).

`locate_many` does the complete job (containment, nearest street within the tolerance, method
codes). `locate` is timed per call, for points inside a street, outside every street (most of
them far away), and in the band within the tolerance of a street (the slow path).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import shapely

from shared.areas import (
    METHOD_NEAREST,
    METHOD_NONE,
    METHOD_POINT,
    Geotagger,
    generate_demo,
)

CITY_BBOX = (105.287, 28.164, 110.190, 32.212)  # lon/lat degrees
SINGLE_CALLS = 20_000
POINTS_SEED = 12345


def _baseline_query_then_contains(
    tree: shapely.STRtree, polygons: np.ndarray, lons: np.ndarray, lats: np.ndarray
) -> np.ndarray:
    points = shapely.points(lons, lats)
    point, street = tree.query(points)
    hit = shapely.contains_xy(polygons[street], lons[point], lats[point])
    index = np.full(lons.size, -1, dtype=np.int64)
    index[point[hit]] = street[hit]
    return index


def _baseline_query_intersects(
    tree: shapely.STRtree, lons: np.ndarray, lats: np.ndarray
) -> np.ndarray:
    point, street = tree.query(shapely.points(lons, lats), predicate="intersects")
    index = np.full(lons.size, -1, dtype=np.int64)
    index[point] = street
    return index


def _best_of(repeat: int, run: Callable[[], object]) -> float:
    """Median wall time of `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _single_us(geotagger: Geotagger, lons: list[float], lats: list[float]) -> float:
    """Median microseconds of one `locate` call over the given points."""
    locate = geotagger.locate
    clock = time.perf_counter_ns
    samples = []
    for lon, lat in zip(lons, lats, strict=True):
        start = clock()
        locate(lon, lat)
        samples.append(clock() - start)
    return statistics.median(samples) / 1000.0


def main(argv: list[str] | None = None) -> None:
    """Print baseline, batch and single-point figures."""
    parser = argparse.ArgumentParser(description="Benchmark the geotagger against raw shapely.")
    parser.add_argument("--points", type=int, default=1_000_000, help="batch size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--tolerance", type=float, default=500.0, help="metres")
    args = parser.parse_args(argv)
    n, repeat = args.points, args.repeat

    start = time.perf_counter()
    hierarchy = generate_demo()
    demo_s = time.perf_counter() - start
    start = time.perf_counter()
    geotagger = Geotagger(hierarchy, tolerance_m=args.tolerance)
    build_s = time.perf_counter() - start
    grid = geotagger.grid
    print(f"demo: {len(hierarchy)} areas generated in {demo_s:.2f} s")
    print(
        f"geotagger: built in {build_s:.2f} s; grid {grid.nx}×{grid.ny} cells of"
        f" {grid.cell_size:.0f} m, tolerance {args.tolerance:.0f} m"
    )

    rng = np.random.default_rng(POINTS_SEED)
    lons = rng.uniform(CITY_BBOX[0], CITY_BBOX[2], n)
    lats = rng.uniform(CITY_BBOX[1], CITY_BBOX[3], n)

    polygons = np.array([s.geometry for s in geotagger.streets], dtype=object)
    shapely.prepare(polygons)
    tree = shapely.STRtree(polygons)
    index_a = _baseline_query_then_contains(tree, polygons, lons, lats)  # warm-up and check
    index_b = _baseline_query_intersects(tree, lons, lats)
    index, method = geotagger.locate_many(lons, lats)

    base_a = n / _best_of(repeat, lambda: _baseline_query_then_contains(tree, polygons, lons, lats))
    base_b = n / _best_of(repeat, lambda: _baseline_query_intersects(tree, lons, lats))
    ours = n / _best_of(repeat, lambda: geotagger.locate_many(lons, lats))
    best_base = max(base_a, base_b)

    counts = np.bincount(method, minlength=3)
    inside = method == METHOD_POINT
    # Points exactly on a border (measure zero) may differ: A's `contains` excludes borders.
    agree = np.mean(index_b[inside] == index[inside]) * 100 if inside.any() else 100.0
    print(
        f"\n{n:,} random points in the city bbox, median of {repeat} runs:"
        f" {counts[METHOD_POINT]:,} in a street, {counts[METHOD_NEAREST]:,} nearest within"
        f" tolerance, {counts[METHOD_NONE]:,} unlocated"
    )
    print(f"  baseline A  query(bbox) + contains_xy     {base_a:>14,.0f} points/s")
    print(f"  baseline B  query(predicate=intersects)   {base_b:>14,.0f} points/s")
    print(
        f"  locate_many (incl. nearest step)          {ours:>14,.0f} points/s"
        f"  = {ours / best_base:.2f}× the faster baseline ({ours / base_a:.2f}× A)"
    )
    print(
        f"  agreement on located streets: {agree:.3f} % (B vs locate_many);"
        f" A and B locate {np.sum(index_a >= 0):,} / {np.sum(index_b >= 0):,} points"
    )

    print(f"\nlocate(), median µs per call over up to {SINGLE_CALLS:,} calls, median of runs:")
    groups = {
        "inside a street": np.flatnonzero(inside),
        "outside every street": np.flatnonzero(method == METHOD_NONE),
        "nearest within tolerance": np.flatnonzero(method == METHOD_NEAREST),
    }
    for label, members in groups.items():
        chosen = members[:SINGLE_CALLS]
        if chosen.size == 0:
            print(f"  {label:<26} (no such points)")
            continue
        xs, ys = lons[chosen].tolist(), lats[chosen].tolist()
        runs = [_single_us(geotagger, xs, ys) for _ in range(repeat)]
        print(f"  {label:<26} {statistics.median(runs):6.2f} µs  ({chosen.size:,} points)")


if __name__ == "__main__":
    main()
