"""Progress of long steps (netsim.control.progress) reaches a listener, and only a listener: the
API, scripts and piped output see nothing new."""
from __future__ import annotations

import io

import netsim
from netsim.control.progress import reporting, task


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._n = 0

    def start(self, description, total):
        self._n += 1
        self.events.append(("start", self._n, description, total))
        return self._n

    def advance(self, task_id, n):
        self.events.append(("advance", task_id, n))

    def stop(self, task_id):
        self.events.append(("stop", task_id))


def test_without_a_listener_a_task_is_silent():
    with task("nothing listens", total=3) as advance:
        advance()
        advance(2)


def test_load_sync_and_count_are_reported_to_the_listener():
    r = Recorder()
    with reporting(r):
        em = netsim.load("example:httpd-app")
        em.traces("pod/client", "httpd-app:80", 5)
    starts = [e[2] for e in r.events if e[0] == "start"]
    assert any(d.startswith("reading example:httpd-app") for d in starts)
    assert any(d.startswith("building the cluster") for d in starts)
    assert any(d.startswith("kube-proxy sync on ") for d in starts)
    count = next(e for e in r.events if e[0] == "start" and e[2] == "5 connections")
    assert count[3] == 5
    assert sum(e[2] for e in r.events if e[0] == "advance" and e[1] == count[1]) == 5
    # every task started was stopped
    assert sorted(e[1] for e in r.events if e[0] == "stop") == sorted(e[1] for e in r.events if e[0] == "start")


def test_the_cli_prints_no_progress_when_stderr_is_not_a_terminal():
    from click.testing import CliRunner
    from netsim.cli.main import cli
    res = CliRunner().invoke(cli, ["trace", "-f", "example:httpd-app", "--from", "pod/client", "--to",
                                   "httpd-app:80", "--count", "20"])
    assert res.exit_code == 0, res.output
    assert "20 new connections" in res.output and "\x1b[" not in res.output


def test_the_rich_reporter_draws_only_after_its_delay():
    from rich.console import Console
    from netsim.cli import progress as P
    buf = io.StringIO()
    rep = P.RichReporter(Console(file=buf, force_terminal=True, width=100))
    tid = rep.start("quick step", 2)
    rep.advance(tid, 2)
    rep.stop(tid)
    rep.close()                       # closed before DELAY_S: nothing was drawn
    assert buf.getvalue() == ""
