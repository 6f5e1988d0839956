"""Disk full under real processes (issue 16, F10): a coordinator whose data directory is a
small tmpfs, an agent and a replayed campaign. The tmpfs is filled mid-campaign: the
coordinator raises its no-space alarm and keeps serving reads instead of exiting; the filler
is deleted: it resumes by itself, and the campaign ends as it would have, with no task lost,
no step repeated and no LLM answer asked for twice.

Needs root (a tmpfs mounted in a private mount namespace of this process); skipped, saying
why, elsewhere."""

import ctypes
import errno
import os
import sqlite3
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from kforge_testing import Cluster, demo_spec, replay_config, require_binaries, wait_for  # noqa: E402

from kforge_client import Client, KforgeError  # noqa: E402

CLONE_NEWNS = 0x00020000
TMPFS_MB = 48
RESERVE_MB = 4
DEADLINE_S = 60
# Each replayed LLM answer's latency in the in-flight test: long enough that the alarm is
# raised, and cleared, while the questions wait for their answers.
LATENCY_MS = 20000


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    """A TMPFS_MB tmpfs visible to this process and its children only."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs in a private mount namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        pytest.skip(f"unshare(CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}")
    mount = tmp_path_factory.mktemp("tmpfs")
    for argv in (["mount", "--make-rprivate", "/"],
                 ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(mount)]):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path):
    """Writes `path` until the file system is full; its size in bytes."""
    chunk = b"\0" * (1 << 20)
    written = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return written


def pending_calls(db):
    """LLM questions asked and not answered yet (rows recorded pending before they are sent)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute("SELECT COUNT(*) FROM llm_calls WHERE status = 'pending'").fetchone()[0]


def assert_each_answer_stored_once(client, campaign):
    """The LLM answers this coordinator process received equal the campaign's stored ones:
    no question was asked (and paid for) twice."""
    asked = sum(client.metric("kforge_llm_requests_total", role=r, outcome="ok") or 0 for r in ("designer", "coder"))
    assert asked == client.campaign(campaign)["llm"]["calls"]


def test_disk_full_raises_the_alarm_and_the_campaign_resumes_when_space_returns(small_disk):
    require_binaries()
    config = replay_config(f"disk_reserve_mb = {RESERVE_MB}")
    data = os.path.join(small_disk, "data")
    cluster = Cluster("disk-full", config, data_dir=data)
    try:
        client = Client(cluster.url, token_file=cluster.token_file, timeout=10)
        wait_for(lambda: any(a["state"] == "live" for a in client.agents()), DEADLINE_S, "the agent", cluster.logs)
        reserve = os.path.join(data, "kforge.reserve")
        assert os.path.getsize(reserve) == RESERVE_MB << 20
        specs = [demo_spec("relu", 1024), demo_spec("relu", 4096), demo_spec("softmax", 1000),
                 demo_spec("row_sum", 512)]
        campaign = client.submit_campaign("disk-full", specs)["id"]

        # Full while the campaign runs: the next turn that writes fails.
        filler = os.path.join(small_disk, "filler")
        fill(filler)
        health = wait_for(lambda: (lambda h: h if h["alarms"] else None)(client.health()), DEADLINE_S,
                          "the no-space alarm in /api/v1/health", cluster.logs)
        assert health["alarms"][0]["name"] == "nospace" and data not in health["alarms"][0]["message"]
        assert cluster.coordinator.proc.poll() is None, "the coordinator exited on a full disk"
        assert client.metric("kforge_nospace_alarm") == 1
        assert not os.path.exists(reserve)
        # Reads are served; changes are refused, saying why.
        assert client.campaign(campaign)["name"] == "disk-full"
        assert client.tasks(campaign=campaign)
        with pytest.raises(KforgeError, match="disk is full"):
            client.cancel_campaign(campaign)
        assert "no-space alarm raised" in cluster.coordinator.log(tail=400)

        # Space returns: it resumes by itself, and the campaign ends as without the alarm.
        os.unlink(filler)
        wait_for(lambda: not client.health()["alarms"], DEADLINE_S, "the alarm to clear", cluster.logs)
        assert client.metric("kforge_nospace_alarm") == 0
        assert os.path.getsize(reserve) == RESERVE_MB << 20
        wait_for(lambda: client.campaign(campaign)["state"] == "finished", 3 * DEADLINE_S, "the campaign to finish",
                 cluster.logs)
        tasks = client.tasks(campaign=campaign)
        assert [(t["op_name"], t["task_id"], t["state"]) for t in tasks] == [
            (s["op_name"], s["task_id"], "passed") for s in specs]
        for t in tasks:
            steps = client.task(t["task"])["trace"]
            assert [s["seq"] for s in steps] == list(range(1, len(steps) + 1))
            verifier = [s for s in steps if s["role"] == "verifier"]
            assert [s["verdict"] for s in verifier][-1] == "passed" and \
                all(s["verdict"] != "passed" for s in verifier[:-1]), steps
        # Every LLM answer this process received is stored once: none was asked for twice.
        assert_each_answer_stored_once(client, campaign)
        assert cluster.coordinator.proc.poll() is None
    finally:
        cluster.stop()
        cluster.cleanup()


def test_questions_in_flight_across_the_alarm_are_asked_once(small_disk):
    """Issue 16: LLM questions in flight when the disk filled were asked again when the alarm
    cleared before their answers came (the Conductor started each task again from its stored
    steps, which had no answer yet), and so were paid for twice. The new start waits for the
    answer in flight."""
    require_binaries()
    config = replay_config(f"disk_reserve_mb = {RESERVE_MB}", llm=f"replay_latency_ms = {LATENCY_MS}")
    data = os.path.join(small_disk, "data-in-flight")
    cluster = Cluster("disk-full-in-flight", config, data_dir=data)
    try:
        client = Client(cluster.url, token_file=cluster.token_file, timeout=10)
        wait_for(lambda: any(a["state"] == "live" for a in client.agents()), DEADLINE_S, "the agent", cluster.logs)
        specs = [demo_spec("relu", 1024), demo_spec("relu", 4096)]
        campaign = client.submit_campaign("in-flight", specs)["id"]
        db = os.path.join(data, "kforge.db")
        wait_for(lambda: pending_calls(db) == len(specs), DEADLINE_S, "both Designer questions asked", cluster.logs)

        filler = os.path.join(small_disk, "filler-in-flight")
        fill(filler)
        wait_for(lambda: client.health()["alarms"], DEADLINE_S, "the no-space alarm", cluster.logs)
        assert pending_calls(db) > 0, "the answers came before the alarm: nothing was in flight across it"
        os.unlink(filler)
        wait_for(lambda: not client.health()["alarms"], DEADLINE_S, "the alarm to clear", cluster.logs)
        assert pending_calls(db) > 0, "the answers came before the alarm cleared"

        wait_for(lambda: client.campaign(campaign)["state"] == "finished", 3 * DEADLINE_S + 4 * LATENCY_MS / 1000,
                 "the campaign to finish", cluster.logs)
        assert [t["state"] for t in client.tasks(campaign=campaign)] == ["passed", "passed"]
        assert_each_answer_stored_once(client, campaign)
        assert cluster.coordinator.proc.poll() is None
    finally:
        cluster.stop()
        cluster.cleanup()
