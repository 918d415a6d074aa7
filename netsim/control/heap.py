"""The cyclic garbage collector around bulk builds of long-lived structures.

Building a 10,000-Service cluster, its hosts, or a node's parsed rule set allocates millions of
objects that all stay alive. CPython's collector runs a generation-2 (whole heap) pass each time
the objects that survived younger passes grow by a quarter of the old heap (Modules/gcmodule.c,
``gc_collect_main`` and the ``long_lived_pending`` rule), so a growing build re-walks everything
it has already built several times and finds nothing: at 10,000 Services that was about half of a
cold ``netsim trace``. ``deferred_gc()`` switches the collector off for the build (reference
counting still frees what dies) and back on after, exactly as it was; nesting is harmless.

Re-enabled, the collector would still walk everything the build made once or twice as it ages
through the young generations. A one-shot process (the `netsim` command: ``one_shot_process()``)
also calls ``gc.freeze()`` at the end of each build, which moves every tracked object into the
permanent generation that later passes skip (the gc module documentation). Only there: a cycle
that dies after a freeze is never reclaimed, and the API and the pytest plugin build many clusters
in one long-lived process.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


_one_shot = False          # process-wide, like the collector it configures


def one_shot_process() -> None:
    """This process runs one command and exits: builds are frozen out of later collections."""
    global _one_shot
    _one_shot = True


# A block that left fewer new container objects than this built nothing worth freezing: a packet's
# walk, a sync that found nothing to do. Freezing there would also freeze the garbage cycles that
# just died (a trace and its outcome point at each other) and keep them for good: a `--count`
# run of a million connections then grew by ~13 KB a connection instead of staying flat.
FREEZE_MIN_OBJECTS = 10_000


@contextmanager
def deferred_gc() -> Iterator[None]:
    """No cyclic collection while the block builds; the collector's previous state after."""
    was_enabled = gc.isenabled()
    before = gc.get_count()[0]          # with the collector off, this only grows with new objects
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_count()[0] - before >= FREEZE_MIN_OBJECTS:
                if _one_shot:
                    gc.freeze()
                elif gc.get_freeze_count() == 0:
                    # a long-lived process (the API, a reach worker): the build goes straight into the
                    # oldest generation (freeze, then unfreeze: both move whole lists), where the young
                    # passes would have put it after walking all of it; it stays collectable by the
                    # next full pass. Not where someone else keeps objects frozen.
                    gc.freeze()
                    gc.unfreeze()
            gc.enable()

