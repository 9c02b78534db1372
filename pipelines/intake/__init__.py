"""Intake: records validated (``records``), accepted into the state (``submit``), and the callers they come
from identified (``auth``). The web API (``pipelines.api``) and the pull stage (``pipelines.stages.pull``)
both bring records here."""
