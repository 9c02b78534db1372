"""The auditor's tools on top of the verifier: ``anchorpipe audit`` (a whole archive, read-only, with an
evidence report) and ``anchorpipe monitor`` (following a log for forks and stalls)."""
