"""The node source: one collector per module (sysctls, counters, conntrack, sockets, links),
``sampler.collect`` to run them all, ``snapshot`` to save and load the result."""
