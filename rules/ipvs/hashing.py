"""The kernel hash functions IPVS schedulers use (include/linux/hash.h, lib/siphash.c), bit-exact.

- ``hash_32(val, bits)``: multiplicative hash with GOLDEN_RATIO_32 = 0x61C88647, keeping the top
  ``bits`` bits (include/linux/hash.h). ip_vs_sh.c and ip_vs_dh.c key their 256-bucket tables with it.
- ``hsiphash_u32(v, key)``: hsiphash() of one 4-byte value as a 64-bit kernel computes it. On
  BITS_PER_LONG == 64 the kernel makes HalfSipHash-1-3 "actually be SipHash-1-3" with 64-bit key
  words and returns the low 32 bits of ``v0 ^ v1 ^ v2 ^ v3`` (lib/siphash.c, HPREAMBLE/HPOSTAMBLE).
  ip_vs_mh.c hashes ``(offset + ntohs(port) + ntohl(addr))`` with it.
"""
from __future__ import annotations

GOLDEN_RATIO_32 = 0x61C88647
_M64 = 0xFFFFFFFFFFFFFFFF


def hash_32(val: int, bits: int) -> int:
    """include/linux/hash.h: ``(val * GOLDEN_RATIO_32) >> (32 - bits)`` in u32 arithmetic."""
    return ((val * GOLDEN_RATIO_32) & 0xFFFFFFFF) >> (32 - bits)


def _rol(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def hsiphash_u32(value: int, key: tuple[int, int]) -> int:
    """hsiphash(&value, 4, key) on a 64-bit little-endian kernel (SipHash-1-3, truncated to u32)."""
    k0, k1 = key
    v0 = 0x736F6D6570736575 ^ k0
    v1 = 0x646F72616E646F6D ^ k1
    v2 = 0x6C7967656E657261 ^ k0
    v3 = 0x7465646279746573 ^ k1
    # 4 bytes only: no full 8-byte block; the tail and the length go into b.
    b = (4 << 56) | (value & 0xFFFFFFFF)

    def sipround() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _M64; v1 = _rol(v1, 13); v1 ^= v0; v0 = _rol(v0, 32)
        v2 = (v2 + v3) & _M64; v3 = _rol(v3, 16); v3 ^= v2
        v0 = (v0 + v3) & _M64; v3 = _rol(v3, 21); v3 ^= v0
        v2 = (v2 + v1) & _M64; v1 = _rol(v1, 17); v1 ^= v2; v2 = _rol(v2, 32)

    v3 ^= b
    sipround()
    v0 ^= b
    v2 ^= 0xFF
    sipround()
    sipround()
    sipround()
    return (v0 ^ v1 ^ v2 ^ v3) & 0xFFFFFFFF
