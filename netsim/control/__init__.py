"""The control plane: the cluster model and what builds it.

Manifests are read (``inputread``, ``docfields``, ``apischema``, ``validation``) into model objects
(``model``, ``objects``, ``listen``), stored in a ``cluster`` whose controllers place pods
(``scheduler``), hand out addresses (``ipam``) and publish ``endpointslices`` with ``events``;
``manifests``/``statedir``/``generators`` are the declarative and imperative ways in, ``serialize``
the way back out to Kubernetes API shape. Nothing here imports the data plane, the rule engines or
the CLI (DESIGN.md: cli → benchmarks → netsim API → data plane → rules, dns → control model).
"""
