"""Fixtures of the Python client's tests: a coordinator with an agent, and a coordinator
that needs a token (kforge_testing.py starts them)."""

import os
import shutil
import tempfile

import pytest
from kforge_testing import START_DEADLINE_S, TOKEN, Cluster, replay_config, require_binaries, wait_for

from kforge_client import Client

_clusters = []


@pytest.fixture(scope="session")
def cluster():
    """A coordinator with the demo's replayed LLM and one agent offering 2 CPU devices."""
    require_binaries()
    config = replay_config()
    c = Cluster("cluster", config)
    _clusters.append(c)
    client = Client(c.url, token_file=c.token_file, timeout=10)
    wait_for(lambda: any(a["state"] == "live" and len(a["devices"]) == 2 for a in client.agents()),
             START_DEADLINE_S, "the agent to register with 2 CPU devices", c.logs)
    yield c
    c.stop()
    c.cleanup()
    _clusters.remove(c)


@pytest.fixture(scope="session")
def token_cluster():
    """A coordinator (no agent) whose API needs a token, on loopback."""
    require_binaries()
    d = tempfile.mkdtemp(prefix="kforge-py-token-")
    token_file = os.path.join(d, "api.token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write("  " + TOKEN + "\n")
    c = Cluster("token", f'[coordinator]\napi_token_file = "{token_file}"\n', agent=False)
    c.token_file = token_file
    _clusters.append(c)
    yield c
    c.stop()
    c.cleanup()
    shutil.rmtree(d, ignore_errors=True)
    _clusters.remove(c)


@pytest.fixture
def client(cluster):
    return Client(cluster.url, token_file=cluster.token_file, timeout=10)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _clusters:
        report.sections.append(("kforge logs", "\n".join(c.logs() for c in _clusters)))
