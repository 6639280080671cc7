"""moga: hardware-aware neural architecture search (MoGA / FairNAS) - search and orchestration."""

__version__ = "0.1.0"
