"""Local MSA and template search with pyhmmer (jackhmmer, nhmmer, hmmsearch), in process, on all cores.

databases  database statistics sidecars (Z values, keys), checked downloads, FASTA shards
hmmsearch  profiles against a streamed database: byte ranges searched by worker threads, hits
           merged (equal to one whole-database search); many queries share one pass
jackhmmer  protein MSAs with AF3's settings          nhmmer  RNA MSAs with AF3's settings
a3m        a3m rows from alignments, dedupe, caps    pairing species pairing for heteromers
templates  hmmbuild --hand + hmmsearch vs pdb_seqres, AF3 filters, features from mmCIF (gemmi)
store      content-addressed results/msa/{molecule}/{sha}.a3m: one search per unique key
"""
