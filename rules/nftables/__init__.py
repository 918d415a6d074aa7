"""kube-proxy's nftables mode: the ``ip kube-proxy`` table a node holds (proxier side) and the
engine that parses such text and evaluates packets through it."""
