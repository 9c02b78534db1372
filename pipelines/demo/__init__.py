"""The local stack and the demos: the main job on embedded defaults. Imported by nothing but the CLI."""
