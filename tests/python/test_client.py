"""kforge_client against a real coordinator and agent (conftest.py): tasks that pass and
fail on replayed LLM answers, dedup by content, the errors, the token, campaigns, gather."""

import asyncio
import os
import socket

import pytest
from kforge_testing import TOKEN, demo_spec, wait_for

from kforge_client import (BadRequest, Campaign, Client, Conflict, KforgeError, NotFound, Task, TaskResult,
                           Unauthorized, Unreachable, VERDICTS, to_csv)

RUN_TIMEOUT_S = 120
POLL_S = 0.2


def relu_task(client):
    # The design's usage, with the demo's relu at N=1024 (replay keys relu/N=1024/...).
    return Task(**demo_spec("relu", 1024, task_type="profile"), client=client, poll_interval=POLL_S)


@pytest.fixture(scope="module")
def passed_relu(cluster):
    client = Client(cluster.url, token_file=cluster.token_file, timeout=10)
    task = relu_task(client)
    success = asyncio.run(task.run(timeout=RUN_TIMEOUT_S))
    return task, success


def test_health_and_agents(client):
    assert client.health()["ok"] is True
    agents = client.agents()
    assert len(agents) == 1
    assert [d["backend"] for d in agents[0]["devices"]] == ["cpu", "cpu"]
    prefix = agents[0]["id"][:8]
    assert client.drain(prefix)["drained"] is True
    assert client.undrain(prefix)["drained"] is False
    host = agents[0]["host"]
    drained = client.drain_host(host, reason="new PSU")
    assert [(a["id"], a["drain_reason"]) for a in drained] == [(agents[0]["id"], "new PSU")]
    assert client.cluster()["hosts"][0]["drain_reason"] == "new PSU"
    assert client.undrain_host(host)[0]["drained"] is False
    with pytest.raises(NotFound, match="no agent matches 'zzz'"):
        client.drain("zzz")


def test_task_passes(passed_relu):
    task, success = passed_relu
    assert success is True
    assert task.state == "passed" and task.verdict == "passed"
    assert task.created is True
    assert isinstance(task.id, int) and task.id > 0
    assert [s["role"] for s in task.steps] == ["designer", "coder", "verifier"]
    assert task.steps[-1]["verdict"] == "passed"
    assert task.best_step == task.steps[1]["seq"]
    assert "class ModelNew" in task.code and "```" not in task.code
    assert task.speedup is not None and task.speedup > 0  # profiled
    assert task.llm_calls == 2 and task.cost_usd == 0  # replayed answers cost nothing
    assert isinstance(task.result, TaskResult) and task.result.steps == 3


def test_same_task_again_is_the_same_task(passed_relu, client):
    first, _ = passed_relu
    stored = client.metric("kforge_llm_stored_calls")
    again = relu_task(client)
    assert again.run_sync(timeout=RUN_TIMEOUT_S) is True  # the sync twin
    assert again.id == first.id and again.created is False
    assert again.llm_calls == 2
    assert client.metric("kforge_llm_stored_calls") == stored
    assert asyncio.run(relu_task(client).run(timeout=RUN_TIMEOUT_S)) is True


def test_failing_task_ends_false_with_its_verdict(client):
    # vector_add's first kernel never writes the ragged tail; at N=100003 the Verifier finds
    # NaN. With 3 steps (designer, coder, verifier) there is no room for the fix.
    task = Task(**demo_spec("vector_add", 100003, limit_steps=3), client=client, poll_interval=POLL_S)
    assert asyncio.run(task.run(timeout=RUN_TIMEOUT_S)) is False
    assert task.state == "failed"
    assert task.verdict == "precision_mismatch"
    assert task.code is None and task.best_step is None
    assert [s["role"] for s in task.steps] == ["designer", "coder", "verifier"]


def test_invalid_combination_is_refused_before_anything_runs(client):
    before = len(client.campaigns())
    task = Task(**demo_spec("relu", 1024, impl_type="triton"), client=client)
    with pytest.raises(BadRequest) as e:
        asyncio.run(task.run())
    assert e.value.status == 400
    assert "impl_type 'triton' does not run on backend 'cpu'; valid on cpu: cpp" in str(e.value)
    assert task.id is None
    assert len(client.campaigns()) == before
    with pytest.raises(BadRequest, match="limit_steps: expected an integer between 1 and 100"):
        Task(**demo_spec("relu", 1024, limit_steps=0), client=client).run_sync()
    with pytest.raises(BadRequest, match="backend: missing"):
        Task(op_name="relu", task_desc="x", client=client).submit()
    # The rules of TOML campaigns, with their messages (issue 16, F8).
    with pytest.raises(BadRequest, match=r"task_desc: defines no Model and get_inputs\(\)"):
        Task(**dict(demo_spec("relu", 1024), task_desc="print('hi')"), client=client).submit()
    with pytest.raises(BadRequest, match="candidate: missing; workflow verify_only"):
        Task(**demo_spec("relu", 1024), workflow="verify_only", client=client).submit()
    with pytest.raises(BadRequest, match="tasks\\[0\\].task_id: expected a string, got null"):
        client.submit_campaign("c", [dict(demo_spec("relu", 1024), task_id=None)])
    with pytest.raises(BadRequest, match="name: expected a non-empty string"):
        client.submit_campaign("", [demo_spec("relu", 1024)])
    assert len(client.campaigns()) == before


def test_not_found_and_conflict(client, passed_relu):
    with pytest.raises(NotFound, match="no task 999999") as e:
        client.task(999999)
    assert e.value.status == 404
    with pytest.raises(NotFound, match="no campaign 999999"):
        Campaign.from_id(client, 999999)
    with pytest.raises(NotFound, match="no such endpoint"):
        client.get("nothing-here")
    finished, _ = passed_relu
    with pytest.raises(Conflict, match="has finished") as e:
        finished.cancel()
    assert e.value.status == 409
    with pytest.raises(KforgeError, match="has not been submitted"):
        relu_task(client).cancel()


def test_cancel_and_resume(client):
    # A valid target that no agent here offers: the Designer and Coder answer (replayed),
    # then its verify job waits for an aarch64 device that never comes.
    task = Task(**demo_spec("relu", 4096, arch="aarch64"), client=client, poll_interval=POLL_S)

    async def scenario():
        running = asyncio.create_task(task.run(timeout=RUN_TIMEOUT_S))
        while not (task.result and task.result.steps >= 2):  # designer and coder done
            assert not running.done(), running.result()
            await asyncio.sleep(POLL_S)
        while not task.jobs:  # the verify job follows the coder's step
            assert not running.done(), running.result()
            await asyncio.to_thread(task.refresh)
            await asyncio.sleep(POLL_S)
        assert task.state == "running" and [j["state"] for j in task.jobs] == ["queued"]
        await asyncio.to_thread(task.cancel)
        return await running

    assert asyncio.run(scenario()) is False
    assert task.state == "cancelled" and task.reason == "cancelled by operator"
    assert wait_for(lambda: [j["state"] for j in client.task(task.id)["jobs"]] == ["cancelled"], 10,
                    "the queued job to be withdrawn")
    task.resume()
    assert task.state in ("pending", "running")
    task.cancel()
    assert task.state == "cancelled"


def test_unreachable():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(Unreachable) as e:
        client.health()
    assert e.value.status is None
    assert f"cannot reach the coordinator at http://127.0.0.1:{port}" in str(e.value)
    assert "KFORGE_COORDINATOR" in str(e.value)
    with pytest.raises(Unreachable):
        asyncio.run(Task(**demo_spec("relu", 1024), client=client).run())
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        with pytest.raises(Unreachable, match=r"no answer from the coordinator at .* within 0.3 s"):
            Client(url, timeout=0.3).health()


def test_environment_defaults(cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("KFORGE_COORDINATOR", cluster.url)
    monkeypatch.delenv("KFORGE_TOKEN", raising=False)
    monkeypatch.setenv("KFORGE_TOKEN_FILE", cluster.token_file)
    assert Client().url == cluster.url
    assert Client().health()["ok"] is True
    monkeypatch.delenv("KFORGE_TOKEN_FILE")
    # The token where the coordinator made it: <data_dir>/api.token, for a coordinator on this host.
    data = os.path.dirname(cluster.token_file)
    assert Client(data_dir=data).health()["ok"] is True
    monkeypatch.setenv("KFORGE_DATA", data)
    assert Client().health()["ok"] is True
    monkeypatch.delenv("KFORGE_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Unauthorized, match="needs its API token"):
        Client().health()
    with open(cluster.token_file, encoding="utf-8") as f:
        monkeypatch.setenv("KFORGE_TOKEN", f.read().strip())
    assert Client().health()["ok"] is True
    monkeypatch.delenv("KFORGE_TOKEN")
    monkeypatch.delenv("KFORGE_COORDINATOR")
    assert Client().url == "http://127.0.0.1:7780"
    with pytest.raises(KforgeError, match="expected the API's URL"):
        Client("127.0.0.1:7780")


def test_token(token_cluster, monkeypatch, tmp_path):
    monkeypatch.delenv("KFORGE_TOKEN_FILE", raising=False)
    monkeypatch.delenv("KFORGE_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no kforge-data/api.token here
    url = token_cluster.url
    with pytest.raises(Unauthorized) as e:
        Client(url).campaigns()
    assert e.value.status == 401 and "needs its API token" in str(e.value) and "token_file" in str(e.value)
    with pytest.raises(Unauthorized):
        Client(url).metrics()
    with pytest.raises(Unauthorized, match="refused the token"):
        Client(url, token="wrong").health()
    with pytest.raises(Unauthorized):
        Task(**demo_spec("relu", 1024), client=Client(url)).submit()
    assert Client(url, token_file=token_cluster.token_file).campaigns() == []
    assert Client(url, token=TOKEN).health()["ok"] is True
    assert "kforge_tasks" in Client(url, token=TOKEN).metrics()
    monkeypatch.setenv("KFORGE_TOKEN_FILE", token_cluster.token_file)
    assert Client(url).health()["ok"] is True
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(KforgeError, match="empty"):
        Client(url, token_file=str(empty))


def test_campaign_submit_wait_results(client):
    tasks = [Task(**demo_spec("relu", 4096)), Task(**demo_spec("gelu", 1024))]
    campaign = Campaign("pytest-two", tasks=tasks, client=client, poll_interval=POLL_S)
    assert asyncio.run(campaign.run(timeout=RUN_TIMEOUT_S)) is True
    assert campaign.created is True and campaign.state == "finished"
    status = campaign.status()
    assert status["name"] == "pytest-two" and status["tasks"]["total"] == 2 and status["tasks"]["passed"] == 2
    assert status["llm"]["calls"] == 4
    rows = campaign.results()
    assert [(r.op_name, r.task_id, r.state, r.verdict) for r in rows] == [
        ("relu", "N=4096", "passed", "passed"), ("gelu", "N=1024", "passed", "passed")]
    assert all(r.campaign == campaign.id and r.speedup is None for r in rows)  # precision_only
    assert [t.id for t in tasks] == [r.task for r in rows] and all(t.state == "passed" for t in tasks)
    tasks[0].refresh()
    assert "class ModelNew" in tasks[0].code
    # The same campaign again is the same campaign; from_id finds it; the results reader.
    again = Campaign("pytest-two", tasks=tasks, client=client)
    assert again.submit() == campaign.id and again.created is False
    assert again.wait_sync(timeout=10) is True
    found = Campaign.from_id(client, campaign.id)
    assert found.name == "pytest-two" and found.state == "finished" and found.done and found.passed
    assert [r.task for r in found.results()] == [r.task for r in rows]
    assert [r.task for r in client.results(op="gelu")] == [rows[1].task]
    assert client.results(campaign=campaign.id, verdict="precision_mismatch") == []
    # The client's verdict list is the server's: an unknown one is refused, naming them all.
    with pytest.raises(BadRequest) as refused:
        client.results(verdict="HTTP 400: model does not exist")
    assert str(refused.value).endswith("is not one of " + ", ".join(VERDICTS))
    assert campaign.id in [c["id"] for c in client.campaigns()]
    csv_text = to_csv(rows)
    assert csv_text.splitlines()[0].startswith("task,campaign,op_name,task_id")
    assert len(csv_text.splitlines()) == 3 and client.results_csv(campaign=campaign.id) == csv_text
    report = campaign.report()
    assert report["campaign"]["id"] == campaign.id and report["campaign"]["name"] == "pytest-two"
    # Cancelling a finished campaign leaves its finished tasks as they are.
    cancelled = campaign.cancel()
    assert cancelled["tasks"]["passed"] == 2 and cancelled["state"] == "finished"


def test_gather_two_tasks(client):
    # softmax N=1000: the first kernel overflows to NaN and the Coder's fix passes (5 steps);
    # row_sum N=512 passes at once. Both awaited together on one event loop.
    softmax = Task(**demo_spec("softmax", 1000), client=client, poll_interval=POLL_S)
    row_sum = Task(**demo_spec("row_sum", 512), client=client, poll_interval=POLL_S)

    async def both():
        return await asyncio.gather(softmax.run(timeout=RUN_TIMEOUT_S), row_sum.run(timeout=RUN_TIMEOUT_S))

    assert asyncio.run(both()) == [True, True]
    assert softmax.id != row_sum.id
    assert [s["verdict"] for s in softmax.steps if s["role"] == "verifier"] == ["precision_mismatch", "passed"]
    assert softmax.result.steps == 5 and row_sum.result.steps == 3
    assert softmax.best_step == [s["seq"] for s in softmax.steps if s["role"] == "coder"][-1]


def test_metrics(client):
    text = client.metrics()
    assert "# TYPE kforge_tasks gauge" in text
    assert client.metric("kforge_tasks", state="passed") >= 1
    assert client.metric("no_such_metric") is None
    jobs = client.jobs(state="done")
    assert jobs and all(j["state"] == "done" and j["kind"] for j in jobs)
    ids = [j["id"] for j in client.jobs()]  # jobs are never deleted and new ones come last
    assert ids == sorted(ids)
    assert [j["id"] for j in client.jobs(offset=1, limit=2)] == ids[1:3]
    assert client.timeline()["devices"] == 2


def test_progress_alerts_llm_and_compare(client):
    # Two finished campaigns that share relu N=4096: their progress, stored LLM calls and
    # comparison.
    two = Campaign("pytest-two", tasks=[Task(**demo_spec("relu", 4096)), Task(**demo_spec("gelu", 1024))],
                   client=client, poll_interval=POLL_S)
    one = Campaign("pytest-one", tasks=[Task(**demo_spec("relu", 4096))], client=client, poll_interval=POLL_S)
    assert asyncio.run(two.run(timeout=RUN_TIMEOUT_S)) is True
    assert asyncio.run(one.run(timeout=RUN_TIMEOUT_S)) is True
    progress = client.progress(two.id, buckets=4)
    assert progress["campaign"] == two.id and progress["state"] == "finished"
    assert progress["tasks"]["finished"] == 2 and progress["tasks"]["remaining"] == 0
    assert progress["eta_ms"] is None and progress["stalled"] is False
    assert len(progress["outcomes"]["passed"]) == 4 and sum(progress["outcomes"]["passed"]) == 2
    assert two.progress()["tasks"] == progress["tasks"]
    with pytest.raises(BadRequest, match="buckets"):
        client.progress(two.id, buckets=0)
    with pytest.raises(NotFound, match="no campaign 999999"):
        client.progress(999999)

    llm = client.llm(campaign=two.id)
    assert llm["live"] is True
    assert llm["stored"]["campaign"] == two.id
    assert llm["stored"]["calls"] == 4 and llm["stored"]["errors"] == 0  # designer and coder, 2 tasks
    assert sorted(r["role"] for r in llm["stored"]["by_role"]) == ["coder", "designer"]
    everything = client.llm()
    assert everything["stored"]["calls"] >= 4 and everything["stored"]["campaign"] is None
    assert set(everything["latency"]) == {"count", "mean_s", "p50_s", "p90_s", "p99_s"}

    compared = client.compare(two.id, one.id)
    assert compared["a"]["id"] == two.id and compared["b"]["id"] == one.id
    assert compared["counts"] == {"a_tasks": 2, "b_tasks": 1, "paired": 1, "only_a": 1, "only_b": 0}
    rows = {r["op_name"]: r for r in compared["rows"]}
    assert rows["relu"]["b"]["state"] == "passed" and rows["gelu"]["b"] is None
    assert rows["relu"]["ratio"] is None  # precision_only: no speedup to compare
    assert [r["a"]["task"] for r in client.each_compared(two.id, one.id, page=1)] == [
        r["a"]["task"] for r in compared["rows"]]
    with pytest.raises(BadRequest):
        client.get("compare", a=two.id)

    # A campaign whose verify job waits for a device no agent has: once its Designer and Coder
    # have answered nothing changes, and with stall_s=1 it is stalled, in its progress and
    # as an alert.
    stuck = Campaign("pytest-stuck", tasks=[Task(**demo_spec("gelu", 4096, arch="aarch64"))], client=client)
    stuck.submit()
    try:
        def stalled_alert():
            return [a for a in client.alerts(stall_s=1) if a["kind"] == "campaign_stalled"
                    and a.get("campaign") == stuck.id]
        alert = wait_for(stalled_alert, RUN_TIMEOUT_S, "the campaign_stalled alert")[0]
        assert "message" in alert and alert["since_ms"] > 0
        assert stuck.progress(stall_s=1)["stalled"] is True
        assert stuck.progress()["stalled"] is False  # the default: 900 s without a change
        assert not [a for a in client.alerts() if a.get("campaign") == stuck.id]
    finally:
        stuck.cancel()
    assert not [a for a in client.alerts(stall_s=1) if a.get("campaign") == stuck.id]


def test_a_campaign_with_a_search_policy(client):
    search = {"strategy": "best_of_n", "samples": 2, "sample_offset": 40}
    campaign = Campaign("pytest-search", tasks=[Task(**demo_spec("relu", 1024, arch="aarch64"))], client=client,
                        search=search)
    campaign.submit()
    campaign.cancel()  # what it runs is not the point: no agent offers aarch64
    shown = campaign.status()["search"]
    assert {k: shown[k] for k in search} == search
    assert shown["target_speedup"] == 0  # the defaults, spelled out
    assert Campaign.from_id(client, campaign.id).search == shown
    # The policy it shows, posted again with the same tasks, is the same campaign.
    assert Campaign("pytest-search", tasks=campaign.tasks, client=client, search=shown).submit() == campaign.id
    with pytest.raises(BadRequest, match=r"^search.samples: expected 1\.\."):
        client.submit_campaign("bad", [demo_spec("relu", 1024)], search={"strategy": "best_of_n", "samples": 0})
    with pytest.raises(BadRequest, match="^search.beam: "):
        client.submit_campaign("bad", [demo_spec("relu", 1024)], search={"beam": 2})
