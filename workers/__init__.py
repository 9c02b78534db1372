"""The Celery application (worker stack); see docs."""
