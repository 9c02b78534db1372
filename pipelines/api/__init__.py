"""The web API: a face beside the CLI and the workers, imported by nothing (``app`` builds it, ``schema``
holds its OpenAPI description)."""
