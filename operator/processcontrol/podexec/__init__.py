"""Exec into pods: the in-pod script (`script`) and the exec transport (`transport`).

This package is the only place that streams exec.
"""
