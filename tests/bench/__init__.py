"""Benchmarks (`make bench`): figures printed for people, never asserted by a test."""
