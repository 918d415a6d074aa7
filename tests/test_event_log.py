"""The cluster's event log is kept column-wise (netsim.control.events.EventLog) and reads as the list
of Event objects it replaced: same events, same order, same messages, as list, slice, index, copy."""
from __future__ import annotations

import copy
import pickle

import pytest

from netsim.control import manifests
from netsim.control.events import Event, EventLog, format_events

# (time, type, reason, object, namespace, source, message, template, arg)
RECORDS = [
    (0.0, "Normal", "RegisteredNode", "node/n1", "", "node-controller",
     "Node n1 event: Registered Node n1 in Controller (podCIDR 10.244.0.0/24)", None, ""),
    (0.0, "Normal", "SuccessfulCreate", "replicaset/web-7d", "default", "replicaset-controller", "",
     "Created pod: {arg}", "web-7d-abcde"),
    (0.0, "Normal", "Scheduled", "pod/web-7d-abcde", "default", "default-scheduler", "",
     "Successfully assigned {namespace}/{name} to {arg}", "n1"),
    (12.5, "Normal", "Started", "pod/web-7d-abcde", "default", "kubelet/n1", "",
     "Started pod sandbox with IP {arg}", "10.244.0.2"),
    (12.5, "Warning", "FailedScheduling", "pod/db-0", "prod", "default-scheduler",
     "0/1 nodes are available: 1 Insufficient cpu.", None, ""),
    (30, "Normal", "Scheduled", "pod/db-0", "default", "default-scheduler", "",
     "Successfully assigned {namespace}/{name} to {arg}", "n1"),
]


def events_and_log() -> tuple[list[Event], EventLog]:
    log = EventLog()
    events = []
    for t, type_, reason, obj, ns, source, message, template, arg in RECORDS:
        events.append(Event(t, type_, reason, obj, ns, source, message, template=template, arg=arg))
        log.record(t, type_, reason, obj, ns, source, message, template=template, arg=arg)
    return events, log


def test_the_log_reads_as_the_events_recorded():
    events, log = events_and_log()
    assert len(log) == len(events) == len(RECORDS)
    assert list(log) == events
    assert [e.message for e in log] == [e.message for e in events]
    assert log[2].message == "Successfully assigned default/web-7d-abcde to n1"
    assert log[3].message == "Started pod sandbox with IP 10.244.0.2"
    assert [repr(e) for e in log] == [repr(e) for e in events]
    assert format_events(log) == format_events(events)
    assert type(log[5].time) is int and log[5].time == 30         # the time as recorded, not converted


def test_index_and_slice_as_a_list_does():
    events, log = events_and_log()
    for i in range(-len(events), len(events)):
        assert log[i] == events[i]
    for sl in (slice(2, None), slice(None, 3), slice(1, -1), slice(None, None, 2), slice(10, None)):
        assert log[sl] == events[sl]
    with pytest.raises(IndexError):
        log[len(events)]
    with pytest.raises(IndexError):
        log[-len(events) - 1]


def test_append_copy_and_pickle_keep_every_event():
    events, log = events_and_log()
    again = EventLog()
    for e in events:
        again.append(e)
    assert list(again) == events
    assert list(pickle.loads(pickle.dumps(log))) == events
    assert list(copy.deepcopy(log)) == events
    # identical events share one kind entry: the table holds the distinct (type, reason, ns, source, template)
    assert len(log._kind_table) == len(RECORDS) - 1


def test_an_object_kept_as_its_name_reads_whole():
    """Cluster.record(..., prefix="pod/"): the log keeps the pod's own name string, the event reads
    ``pod/NAME`` and its message names the pod as before."""
    log = EventLog()
    name = "web-7d-abcde"
    log.record(0.0, "Normal", "Scheduled", name, "default", "default-scheduler",
               template="Successfully assigned {namespace}/{name} to {arg}", arg="n1", prefix="pod/")
    assert log._objects[0] is name
    assert log[0] == Event(0.0, "Normal", "Scheduled", "pod/web-7d-abcde", "default", "default-scheduler",
                           "Successfully assigned default/web-7d-abcde to n1")
    assert log[0].object == "pod/web-7d-abcde"


def test_building_from_consumed_documents_gives_the_same_cluster():
    kept = manifests.read_documents(["example:shop"])
    consumed = manifests.read_documents(["example:shop"])
    a = manifests.build_documents(kept, consume=False)
    b = manifests.build_documents(consumed, consume=True)
    assert consumed == [] and len(kept) > 2          # the consumed list is emptied, the other kept
    assert format_events(a.event_log) == format_events(b.event_log)
    assert [(p.name, p.ip, p.node_name) for p in a.pods()] == [(p.name, p.ip, p.node_name) for p in b.pods()]
    assert [(s.name, s.cluster_ip) for s in a.services()] == [(s.name, s.cluster_ip) for s in b.services()]
