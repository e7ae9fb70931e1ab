"""Inputs, structures, CCD, tokens, conformers, features, crops and the HDF5 feature store."""
