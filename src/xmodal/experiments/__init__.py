"""Experiments built on the library (never used by it): the built-in world, the demo and the
side-by-side comparison harness of transfer strategies."""
