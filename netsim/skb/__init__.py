"""The packet primitive every layer shares: a leaf package that imports nothing else of netsim.

The rule engines (``netsim.rules``) and the data plane both read and rewrite packets, and DESIGN.md's
arrows run data plane → rules, so the packet cannot live in the data plane: it lives here, where
anything may import it without an arrow pointing back (as the kernel's ``struct sk_buff`` sits in
include/linux/skbuff.h under every subsystem that handles one).
"""
