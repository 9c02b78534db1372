"""anchorpipe: seal records into Merkle batches, anchor them, archive their proofs."""

__version__ = "0.1.0"
