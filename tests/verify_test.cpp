// The verification corpus (tests/harness/cases.json), every case through both paths a
// verdict can take: `kforge verify` (the real binary) and a verify job on an agent.
#include "agent/verify.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>

#include "common/fs.h"
#include "tests/support/cluster.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;

namespace {

std::filesystem::path corpus_dir() {
  return source_dir() / "tests" / "harness";
}

std::vector<nlohmann::json> corpus(const char* file = "cases.json", size_t at_least = 10) {
  auto text = kforge::read_file(corpus_dir() / file);
  REQUIRE_MESSAGE(text.ok(), text.status().to_string());
  auto doc = nlohmann::json::parse(*text);
  REQUIRE(doc.is_array());
  REQUIRE(doc.size() >= at_least);
  return {doc.begin(), doc.end()};
}

// The first case of each verdict (and of each kind of limit): every way a verdict is reached
// through the one-shot command, without paying a cold judge for each of the ~45 cases (the
// agent's test below runs them all on warm workers).
std::vector<nlohmann::json> one_per_verdict() {
  std::vector<nlohmann::json> picked;
  std::set<std::string> seen;
  auto all = corpus();
  auto hostile = corpus("cases_hostile.json");
  all.insert(all.end(), hostile.begin(), hostile.end());
  for (const auto& c : all) {
    std::string key = c.value("expect", "") + (c.value("input_error", false) ? "/input" : "") +
                      (c.contains("limits") ? "/" + c["limits"].dump() : "");
    if (seen.insert(key).second) picked.push_back(c);
  }
  return picked;
}

std::string str(const nlohmann::json& c, const char* key, const std::string& fallback = "") {
  return c.contains(key) && c[key].is_string() ? c[key].get<std::string>() : fallback;
}

uint64_t limit(const nlohmann::json& c, const char* key) {
  if (!c.contains("limits") || !c["limits"].contains(key)) return 0;
  return c["limits"][key].get<uint64_t>();
}

uint64_t timeout_s(const nlohmann::json& c) {
  return c.contains("timeout_s") ? c["timeout_s"].get<uint64_t>() : 60;
}

// `kforge verify --json` on corpus case `c`, with `candidate` (its own file by default).
Result<ProcessResult> verify_case(const nlohmann::json& c, std::filesystem::path candidate = {}) {
  if (candidate.empty()) candidate = corpus_dir() / str(c, "candidate");
  ProcessSpec spec;
  spec.argv = {(binary_dir() / "cli" / "kforge").string(),
               "verify",
               "--json",
               "--task",
               (corpus_dir() / str(c, "task")).string(),
               "--candidate",
               candidate.string(),
               "--backend",
               str(c, "backend", "cpu"),
               "--arch",
               str(c, "arch", "x86_64"),
               "--impl-type",
               str(c, "impl_type"),
               "--framework",
               str(c, "framework"),
               "--task-type",
               str(c, "task_type", "precision_only"),
               "--timeout",
               std::to_string(timeout_s(c)),
               "--op-name",
               str(c, "op_name", std::filesystem::path(str(c, "task")).stem().string())};
  if (uint64_t mb = limit(c, "memory_mb"))
    spec.argv.insert(spec.argv.end(), {"--memory-limit", std::to_string(mb)});
  if (uint64_t n = limit(c, "processes"))
    spec.argv.insert(spec.argv.end(), {"--processes", std::to_string(n)});
  spec.env_allow = {"PATH", "TMPDIR"};
  spec.timeout = std::chrono::seconds(timeout_s(c) + 60);
  return run_process(spec);
}

}  // namespace

TEST_CASE("each verdict of the corpus is reached through kforge verify") {
  for (const auto& c : one_per_verdict()) {
    std::string name = str(c, "name");
    CAPTURE(name);
    auto r = verify_case(c);
    REQUIRE(r.ok());
    if (c.value("input_error", false)) {
      CHECK(r->exit_code == 1);
      CHECK(r->stderr_data.find("unusable") != std::string::npos);
      continue;
    }
    REQUIRE_MESSAGE(r->exit_code == 0, r->stderr_data);
    auto doc = nlohmann::json::parse(r->stdout_data, nullptr, false);
    REQUIRE_MESSAGE(doc.is_object(), r->stdout_data);
    CHECK_MESSAGE(doc.value("verdict", "") == str(c, "expect"), doc.value("message", ""));
    if (doc.value("verdict", "") != "passed") CHECK_FALSE(doc.value("message", "").empty());
    if (str(c, "task_type") == "profile" && str(c, "expect") == "passed") {
      REQUIRE(doc.contains("profile"));
      CHECK(doc["profile"].value("speedup", 0.0) > 0.0);
      // the agent's Verifier gave the judge a second worker to time the reference in
      CHECK_MESSAGE(doc["profile"].value("reference_timing", "") == "worker",
                    doc.value("reference_worker", ""));
      // and killed it before the candidate loaded (the judge measures device memory from
      // there), and said so
      CHECK(doc["phases_ms"].contains("reference_timed"));
    }
  }
}

// A candidate's stderr is any bytes: its tail (the last 4000 bytes, which reach the judge)
// cut inside a character, and bytes that are no UTF-8 at all, must neither abort the
// verifier (nlohmann's dump threw type_error.316, uncaught) nor change the verdict.
TEST_CASE("a correct candidate that writes invalid UTF-8 to its stderr passes") {
  TempDir dir;
  auto correct = kforge::read_file(corpus_dir() / "candidates" / "add_cpp_ok.py");
  REQUIRE(correct.ok());
  // 2000 three-byte characters, then 17 bytes: the cut 4000 bytes from the end falls one
  // byte into a character.
  const std::filesystem::path candidate = dir / "candidate.py";
  write_file(candidate, *correct + R"(

import os
os.write(2, "caf\u00e9 ".encode() * 300 + "\u20ac".encode() * 2000 + b" \xff\xfe not utf-8: \xc3\n")
)");
  const nlohmann::json add = {{"task", "tasks/vector_add_torch.py"},
                              {"impl_type", "cpp"},
                              {"framework", "torch"},
                              {"op_name", "vector_add"}};
  auto r = verify_case(add, candidate);
  REQUIRE(r.ok());
  REQUIRE_MESSAGE(r->exit_code == 0, r->stderr_data);
  auto doc = nlohmann::json::parse(r->stdout_data, nullptr, false);
  REQUIRE_MESSAGE(doc.is_object(), r->stdout_data);
  CHECK_MESSAGE(doc.value("verdict", "") == "passed", doc.value("message", ""));
}

TEST_CASE("every corpus case and every cheat reaches its verdict as a job on an agent") {
  TestCluster cluster;
  AgentOptions options = TestCluster::fast_agent_options();
  options.python = "/usr/bin/python3";
  options.limits.processes = 512;  // jobs without limits of their own get warm workers
  if (::geteuid() == 0) {          // the full box: slot uids, cgroup, namespaces
    options.contain = true;
    options.job_uids = "61200-61263";
  }
  cluster.start_agent("a", 2, options);
  REQUIRE(cluster.wait_live(1));

  std::vector<std::pair<nlohmann::json, int64_t>> jobs;
  auto cases = corpus();
  auto hostile = corpus("cases_hostile.json");
  cases.insert(cases.end(), hostile.begin(), hostile.end());
  if (options.contain) {  // workers forked from the zygote check their box from the inside
    auto box = corpus("cases_box.json", 2);
    cases.insert(cases.begin(), box[0]);
    cases.push_back(box[1]);
  }
  for (const auto& c : cases) {
    auto reference = kforge::read_file(corpus_dir() / str(c, "task"));
    auto candidate = kforge::read_file(corpus_dir() / str(c, "candidate"));
    REQUIRE(reference.ok());
    REQUIRE(candidate.ok());
    VerifySpec spec;
    spec.op_name = str(c, "op_name", std::filesystem::path(str(c, "task")).stem().string());
    if (c.contains("job") && c["job"].is_object()) spec.options = c["job"];
    spec.target = Target{str(c, "backend", "cpu"), str(c, "arch", "x86_64"), str(c, "impl_type"),
                         str(c, "framework")};
    spec.task_type = str(c, "task_type", "precision_only");
    proto::Assign assign;
    assign.kind = "verify";
    assign.files = verify_files(spec, *reference, *candidate);
    assign.timeout_ms = timeout_s(c) * 1000;
    assign.limits.address_space_mb = limit(c, "memory_mb");
    assign.limits.processes = limit(c, "processes");
    int64_t id = cluster.coordinator().call([&](Coordinator& co) {
      NewJob job;
      job.kind = JobKind::verify;
      job.exclusive = spec.task_type == "profile";
      auto r = co.submit(job, assign);
      REQUIRE(r.ok());
      return *r;
    });
    jobs.emplace_back(c, id);
  }
  std::vector<int64_t> ids;
  for (const auto& [c, id] : jobs) ids.push_back(id);
  REQUIRE(cluster.wait_all_done(ids, 600s));
  for (const auto& [c, id] : jobs) {
    std::string name = str(c, "name");
    CAPTURE(name);
    auto row = cluster.coordinator().call([&](Coordinator& co) { return co.store().get_job(id); });
    REQUIRE(row.ok());
    REQUIRE(row->result);
    const proto::JobResult& result = *row->result;
    CHECK_MESSAGE(result.infra_error.empty(), result.infra_error);
    REQUIRE_MESSAGE(result.verify, "no verdict recorded");
    const VerifyResult& v = *result.verify;
    if (c.value("input_error", false)) {
      CHECK(v.verdict == Verdict::infra_error);
      CHECK_FALSE(v.input_error.empty());
    } else {
      CHECK_MESSAGE(to_string(v.verdict) == str(c, "expect"), v.message);
    }
    if (str(c, "task_type") == "profile" && v.verdict == Verdict::passed) {
      // in the box too, the reference was timed in a worker of its own (its own slot uid)
      REQUIRE(v.profile);
      auto more = nlohmann::json::parse(v.profile->more, nullptr, false);
      CHECK_MESSAGE(more.value("reference_timing", "") == "worker", v.profile->more);
      if (options.contain) {  // both sides' CPU read from their boxes' cpu.stat
        REQUIRE_MESSAGE(more["cpu"].is_object(), v.profile->more);
        CHECK(more["cpu"].value("source", "") == "cgroup");
        CHECK(more["cpu"]["candidate"].is_object());
        CHECK(more["cpu"]["reference"].is_object());
        if (c.value("cpu_bound", false)) {  // no call taken below its CPU time on one thread
          CHECK_MESSAGE(v.profile->candidate.median_us + more.value("worker_rtt_us", 0.0) >=
                            0.98 * more["cpu"]["candidate"].value("cpu_median_us", 0.0),
                        v.profile->more);
        }
      }
    }
  }

  // The agent's heartbeats bring its Verifiers' pools to the coordinator's /metrics.
  auto metrics = [&] {
    return cluster.coordinator().call([](Coordinator& co) {
      std::string out;
      co.render_metrics(out);
      return out;
    });
  };
  const std::string labels = "{agent=\"" + cluster.agent("a").id() + "\",device=\"cpu:0\"}";
  const std::string spawned = "kforge_verifier_workers_spawned_total" + labels + " ";
  CHECK_MESSAGE(wait_until([&] { return metrics().find(spawned) != std::string::npos; }, 10s),
                metrics());
  std::string text = metrics();
  size_t at = text.find(spawned);
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(text.substr(at + spawned.size())) > 0);  // each job took a fresh worker
  CHECK(text.find("kforge_verifier_workers{agent=\"" + cluster.agent("a").id() +
                  "\",device=\"cpu:0\",state=\"warm\"}") != std::string::npos);
  CHECK(text.find("kforge_verifier_zygote_up" + labels) != std::string::npos);
}

TEST_CASE("a job's memory limit is sized from the machine when unset") {
  CHECK(default_job_memory_mb(65536, 8) == 6144);   // 3/4 of 64 GiB over 8 devices
  CHECK(default_job_memory_mb(24576, 1) == 18432);  // one device: 3/4 of the host
  CHECK(default_job_memory_mb(24576, 0) == 18432);  // no devices listed: as one
  CHECK(default_job_memory_mb(2048, 64) == 512);    // never below 512 MiB
}
