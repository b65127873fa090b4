"""Realistic load generators (hotline, sensors, grid workers, field staff) and benchmarks."""
