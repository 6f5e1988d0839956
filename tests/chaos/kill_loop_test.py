"""The coordinator killed with SIGKILL again and again during a replayed campaign (issue 16):
a real coordinator and agent, the demo's recording answering for the LLM. The campaign is
run once without a kill, then again with the coordinator killed each time a step has been
stored since its last start, and restarted on the same data directory and ports. Nothing may
be lost or repeated: every task ends as in the uninterrupted run, with the same steps (roles
and verdicts, numbered 1..n), and the same number of LLM answers stored (none asked twice)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from kforge_testing import Cluster, demo_spec, replay_config, require_binaries, wait_for  # noqa: E402

from kforge_client import Client  # noqa: E402

KILLS = 6
DEADLINE_S = 60
SPECS = [demo_spec("relu", 1024), demo_spec("relu", 4096), demo_spec("softmax", 1000),
         demo_spec("row_sum", 512)]


def _client(cluster):
    return Client(cluster.url, token_file=cluster.token_file, timeout=10)


def _steps(client, campaign):
    return {(t["op_name"], t["task_id"]): client.task(t["task"])["trace"]
            for t in client.tasks(campaign=campaign)}


def _outcome(client, campaign):
    """What must not depend on kills: each task's state and its steps' roles and verdicts."""
    tasks = {(t["op_name"], t["task_id"]): t["state"] for t in client.tasks(campaign=campaign)}
    steps = _steps(client, campaign)
    for key, trace in steps.items():
        assert [s["seq"] for s in trace] == list(range(1, len(trace) + 1)), (key, trace)
    return {key: (tasks[key], [(s["role"], s.get("verdict")) for s in steps[key]]) for key in tasks}, \
        client.campaign(campaign)["llm"]["calls"]


def _run(cluster, kills):
    client = _client(cluster)
    wait_for(lambda: any(a["state"] == "live" for a in client.agents()), DEADLINE_S, "the agent", cluster.logs)
    campaign = client.submit_campaign("kill-loop", SPECS)["id"]
    for _ in range(kills):
        seen = sum(len(t) for t in _steps(client, campaign).values())
        if client.campaign(campaign)["state"] == "finished":
            break
        # The event, not a sleep: a step stored since this process started.
        wait_for(lambda: sum(len(t) for t in _steps(client, campaign).values()) > seen or
                 client.campaign(campaign)["state"] == "finished", DEADLINE_S, "a new step", cluster.logs)
        cluster.restart_coordinator(kill=True)
        client = _client(cluster)
    wait_for(lambda: client.campaign(campaign)["state"] == "finished", 3 * DEADLINE_S, "the campaign to finish",
             cluster.logs)
    return _outcome(client, campaign)


def test_sigkill_loop_loses_and_repeats_nothing():
    require_binaries()
    calm = Cluster("calm", replay_config())
    try:
        expected, expected_calls = _run(calm, 0)
    finally:
        calm.stop()
        calm.cleanup()
    assert all(state == "passed" for state, _ in expected.values()), expected
    # Answers 300 ms late: the kills land mid-campaign, between and during turns.
    killed = Cluster("killed", replay_config(llm="replay_latency_ms = 300"), fixed_ports=True)
    try:
        got, calls = _run(killed, KILLS)
        assert killed.starts > 1, "no kill happened"
        print(f"coordinator started {killed.starts} times; {sum(len(s) for _, s in got.values())} steps, {calls} LLM answers")
    finally:
        killed.stop()
        killed.cleanup()
    assert got == expected
    assert calls == expected_calls
