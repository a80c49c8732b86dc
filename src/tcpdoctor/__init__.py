"""tcpdoctor: why connections to a Kubernetes service reset, probes fail and requests stall."""

__version__ = "0.1.0"
