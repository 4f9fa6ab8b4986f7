"""Benchmarks of flask-refiner-segment against what a user would pick instead."""
