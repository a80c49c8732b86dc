"""`tcpdoctor probe`: the kubelet's HTTP, TCP and gRPC probes, emulated, and its state machine."""
