"""Benchmarks behind `proxitrace bench`: synthetic workloads timed in-process, reported as rates."""
