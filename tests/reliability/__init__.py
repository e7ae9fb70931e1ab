"""Reliability tests (issue #14): bad and unusual inputs, damaged caches."""
