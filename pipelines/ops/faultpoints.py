"""Named points inside the stages where crash tests stop a worker.

When ``ANCHORPIPE_FAULT_PAUSE`` names a point, the process reaching it creates
``$ANCHORPIPE_FAULT_DIR/<point>`` and stalls, so a test can kill -9 it at exactly
that step. Unset (always, outside tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

def reached(point: str) -> None:
    """Stall here if a crash test named ``point`` (e.g. ``seal.claimed``, ``anchor.appended``)."""
    if os.environ.get("ANCHORPIPE_FAULT_PAUSE") == point:
        Path(os.environ.get("ANCHORPIPE_FAULT_DIR", "."), point).touch()
        time.sleep(3600)
