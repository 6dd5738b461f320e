"""processcontrol: suspend and resume containerrun processes in Kubernetes pods, declaratively."""

__version__ = "0.1.0"
