"""The operator: kopf handlers (handlers.py), the per-suspension loop, and pure planning and status logic."""
