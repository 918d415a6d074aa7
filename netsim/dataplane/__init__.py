"""The data plane: hosts and devices, routing, netfilter hooks, conntrack, sockets, the walker.

``topology`` builds hosts, interfaces and routes (``routing``) from the control plane's model;
``proxy`` is kube-proxy on each node (it asks ``netsim.rules`` for the node's rules and hands the
walker a ``netfilter`` to run; ``proxy_status``/``proxy_metrics`` are its /healthz and /metrics);
the ``walker`` carries a packet hop by hop through them, ``conntrack`` and the ``servers`` (sockets),
recording a ``trace`` (summed up by ``summary``, written as ``pcap``); ``target`` turns ``--to``
into an address. It imports the rule engines, DNS and the control model, never the API or the CLI.
"""
