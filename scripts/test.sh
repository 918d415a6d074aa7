#!/usr/bin/env bash
# Install what the test suite needs (pip extras; Debian packages when root and missing), then run
# the whole suite inside a fresh network namespace (`unshare --net`) so that kernel-backed tests can
# never reach a real network.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(iptables nftables conntrack iproute2 bind9-dnsutils knot-dnsutils ipset ipvsadm tshark curl dnsperf valgrind)
bins=(iptables-restore nft conntrack ip dig kdig ipset ipvsadm tshark curl dnsperf valgrind)
missing=()
for i in "${!bins[@]}"; do command -v "${bins[$i]}" >/dev/null 2>&1 || missing+=("${debs[$i]}"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "not root: kernel-backed tests will skip (missing: ${missing[*]})"
  fi
fi

# the reach extra (Dask distributed, pyarrow, plotly): tests/test_reach_dask.py runs Dask's LocalCluster
python3 -m pip install -q --disable-pip-version-check -e '.[test,reach]'

# The IPVS VM (tests marked `vm`): Debian's kernel has ip_vs as a module, qemu boots it without KVM
# through virtme-ng. Only as root (the guest needs root for namespaces). Opt-in with NETSIM_VM_TESTS=1,
# which also lets tests/test_ipvs_vm.py run: one boot takes 1-3 min on a 2-core machine and the guest's
# cluster minutes more, which with the packages' install does not fit CI's 10-minute budget beside the suite.
if [ "$(id -u)" = 0 ] && [ "${NETSIM_VM_TESTS:-0}" != 0 ]; then
  vm_debs=()
  command -v qemu-system-x86_64 >/dev/null 2>&1 || vm_debs+=(qemu-system-x86)
  ls /lib/modules/*/kernel/net/netfilter/ipvs/ip_vs.ko* >/dev/null 2>&1 && ls /boot/vmlinuz-* >/dev/null 2>&1 \
    || vm_debs+=(linux-image-amd64)
  command -v busybox >/dev/null 2>&1 || vm_debs+=(busybox-static)
  if [ "${#vm_debs[@]}" -gt 0 ]; then
    echo "installing Debian packages for the IPVS VM: ${vm_debs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${vm_debs[@]}" >/dev/null
  fi
  python3 -m pip install -q --disable-pip-version-check -e '.[vm]'
fi

if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1; then
  # A private network namespace (and mount namespace, for /etc/netns bind mounts and /run/netns).
  isolate=(unshare --net --mount --propagation private --)
else
  isolate=()
fi
"${isolate[@]}" python3 -m pytest -q -p no:cacheprovider "$@"

# The user test suite shipped with the package, run as a user runs it: through the installed pytest
# plugin (entry point, no conftest, not the project's pytest settings), from outside the checkout,
# once per kube-proxy mode.
examples="$(python3 -c 'import netsim, os; print(os.path.join(os.path.dirname(netsim.__file__), "examples", "tests"))')"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && "${isolate[@]}" python3 -m pytest -q -p no:cacheprovider -c /dev/null --rootdir="$scratch" \
   --confcutdir="$examples" --netsim-mode=iptables,ipvs "$examples")
