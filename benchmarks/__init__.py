"""Side-by-side benchmarks of segfpn against its peers (``python -m benchmarks.run``)."""
