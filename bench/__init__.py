"""Reproducible benchmarks that print ratios against a baseline (see ``bench/README.md``)."""
