"""The AlphaFold 3 network, written from the AF3 supplementary algorithms."""
