"""Live kernel events through bpftrace: tracepoint formats, program templates, the runner,
attribution to processes and pods, and in-kernel aggregation (the agent's engine)."""
