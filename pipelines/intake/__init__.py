"""Intake: records in, pushed over the API or pulled from agency systems, validated and accepted."""
