"""Local MSA and template search with pyhmmer (jackhmmer, nhmmer, hmmsearch)."""
