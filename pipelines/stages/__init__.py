"""The stages: what the workers run, each on its own queue.

``batches`` seals accepted records, anchors them in the log, archives their proofs, upgrades them
with external anchors and reconciles what a crash left; ``external`` runs anchoring rounds (TSAs, the
chain); ``witnessing`` has the log's checkpoints cosigned; ``webhooks`` delivers the outbox; ``pull``
reads agency systems into the intake path. Each receives the ports it needs from the runtime.
"""

#: One Celery queue per stage (plus ``pull``); each scales with its own workers.
QUEUES = ("seal", "anchor", "archive", "reconcile", "pull", "external", "upgrade", "witness", "webhooks")
