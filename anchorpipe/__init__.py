"""anchorpipe's public Python API for agency systems: ``anchorpipe.client`` (docs/client.md), the client's one
home."""
