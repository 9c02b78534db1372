"""The proof archive: batch bundles and the (agency, id) directory on an object store, and proof folders."""
