"""The pure core: Merkle trees, record commitments, proof format, verification. No I/O."""
