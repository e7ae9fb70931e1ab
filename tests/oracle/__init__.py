"""Protenix 2.0.0 as a black-box oracle for Foldline's tests (its own environment, `.venv-oracle`)."""
