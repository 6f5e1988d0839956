// examples/gpu (docs/gpu-validation.md) without a GPU: the campaign loads and expands as
// expected.json says, every replay key the Conductor will ask for is in recording.jsonl
// (the expected verdicts replayed through the Conductor's own rules), no recorded answer
// is dead, and the campaign's jobs would be placed on the GPU the agent reports.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "agent/devices.h"
#include "common/config.h"
#include "common/targets.h"
#include "coordinator/generation/conductor_rules.h"
#include "coordinator/generation/prompts.h"
#include "coordinator/intake/campaign.h"
#include "tests/support/support.h"

using namespace kforge;

namespace {

std::filesystem::path example() {
  return test::source_dir() / "examples" / "gpu";
}

// The two campaigns (one GPU; the sweep for several) and their expected verdicts.
const std::vector<std::pair<std::string, std::string>> kCampaigns = {
    {"campaign.toml", "expected.json"}, {"sweep.toml", "sweep-expected.json"}};

nlohmann::json expected(const std::string& file) {
  std::ifstream in(example() / file);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

std::map<std::string, std::string> recording() {
  std::map<std::string, std::string> out;
  std::ifstream in(example() / "recording.jsonl");
  REQUIRE(in);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto doc = nlohmann::json::parse(line);
    auto key = doc["replay_key"].get<std::string>();
    CHECK_MESSAGE(out.count(key) == 0, key << " is recorded twice");
    out[key] = doc["content"].get<std::string>();
  }
  return out;
}

}  // namespace

TEST_CASE(
    "the GPU campaigns load: cuda, triton, torch, profile; the sweep has work for eight GPUs") {
  for (const auto& [file, expected_file] : kCampaigns) {
    CAPTURE(file);
    auto campaign = load_campaign(example() / file);
    REQUIRE_MESSAGE(campaign.ok(), campaign.status().message());
    auto want = expected(expected_file);
    CHECK(campaign->name == want["campaign"].get<std::string>());
    CHECK(campaign->workflow == Workflow::default_);
    REQUIRE(campaign->tasks.size() == want["tasks"].size());
    std::set<std::string> ops;
    for (const auto& t : campaign->tasks) {
      const TaskSpec& s = t.spec;
      std::string key = s.op_name + "/" + s.task_id;
      CAPTURE(key);
      CHECK(want["tasks"].contains(key));
      CHECK(s.backend == "cuda");
      CHECK(s.impl_type == "triton");
      CHECK(s.framework == "torch");
      CHECK(s.task_type == "profile");
      CHECK(validate_target(Target{s.backend, s.arch, s.impl_type, s.framework}).ok());
      CHECK(s.task_desc.find("class Model") != std::string::npos);
      ops.insert(s.op_name);
    }
    CHECK(ops.size() >= 8);
    if (file == "sweep.toml") {
      size_t jobs = 0;
      for (const auto& [key, plan] : want["tasks"].items()) jobs += plan["verifications"].size();
      CHECK(jobs >= 64);  // at least eight verify jobs per GPU of an 8-GPU host
    } else {
      CHECK(campaign->tasks.size() == ops.size());  // one task per op
    }
  }
}

TEST_CASE("every replay key the Conductor will ask for is recorded, and no other") {
  auto answers = recording();
  std::set<std::string> asked;
  ConductorPolicy policy;  // no [llm.conductor] in kforge.toml: the rules decide
  for (const auto& [file, expected_file] : kCampaigns) {
    CAPTURE(file);
    auto campaign = load_campaign(example() / file);
    REQUIRE(campaign.ok());
    auto want = expected(expected_file);
    for (const auto& t : campaign->tasks) {
      const TaskSpec& s = t.spec;
      const std::string task = s.op_name + "/" + s.task_id;
      CAPTURE(task);
      const auto& plan = want["tasks"][task];
      const auto& verifications = plan["verifications"];
      std::vector<StepRow> steps;
      size_t verified = 0;
      std::map<std::string, int> calls;
      Action action;
      for (int guard = 0; guard < 50; ++guard) {
        action = decide(policy, s.limit_steps, steps);
        if (action.kind == ActionKind::finish) break;
        StepRow step;
        step.seq = static_cast<int>(steps.size()) + 1;
        if (action.kind == ActionKind::design || action.kind == ActionKind::code) {
          step.role = action.kind == ActionKind::design ? Role::designer : Role::coder;
          const std::string role(to_string(step.role));
          std::string key = task + "/" + role + "/" + std::to_string(++calls[role]);
          CAPTURE(key);
          asked.insert(key);
          auto it = answers.find(key);
          REQUIRE_MESSAGE(it != answers.end(), key << " is asked for but not recorded");
          // The Conductor records garbled answers as such; these must be usable.
          if (step.role == Role::designer) {
            CHECK(extract_design(it->second).ok());
          } else {
            CHECK(extract_code(it->second, s.impl_type).ok());
          }
          step.output = it->second;
        } else {
          REQUIRE(action.kind == ActionKind::verify);
          REQUIRE_MESSAGE(verified < verifications.size(), "a verification more than planned");
          step.role = Role::verifier;
          step.verdict =
              parse_enum<Outcome>(verifications[verified++]["verdict"].get<std::string>()).value();
        }
        steps.push_back(step);
      }
      REQUIRE(action.kind == ActionKind::finish);
      CHECK(verified == verifications.size());
      CHECK(action.passed == (plan["state"] == "passed"));
      int counted = 0;
      for (const auto& st : steps) counted += st.counted ? 1 : 0;
      CHECK(counted == plan["steps"].get<int>());
    }
  }
  for (const auto& [key, content] : answers) {
    CHECK_MESSAGE(asked.count(key) == 1, key << " is recorded but never asked for");
  }
}

TEST_CASE("the campaign's arch is what the agent reports for the GPU it runs on") {
  // Jobs are placed on a device of the same backend and arch (exact names): the campaign
  // file's default, h100, is the name the agent gives an H100; gpu-e2e.sh rewrites it to
  // the arch the agent registered (an H200 reports h200, and an h100 job would wait forever).
  for (const auto& [file, expected_file] : kCampaigns) {
    auto campaign = load_campaign(example() / file);
    REQUIRE(campaign.ok());
    for (const auto& t : campaign->tasks) CHECK(t.spec.arch == "h100");
  }
  CHECK(gpu_arch_from_name("NVIDIA H100 80GB HBM3") == "h100");
  CHECK(gpu_arch_from_name("NVIDIA H200") == "h200");
  auto csv =
      parse_nvidia_smi_csv("0, NVIDIA H200, 143771, GPU-92276658-1e27-a1c0-8a6a-63ec24ede6a4\n");
  REQUIRE(csv.ok());
  REQUIRE(csv->size() == 1);
  CHECK((*csv)[0].info.arch == "h200");
  CHECK(validate_target(Target{"cuda", "h200", "triton", "torch"}).ok());
}

TEST_CASE(
    "the GPU example's kforge.toml loads: replayed roles, a verify timeout the hang fits in") {
  auto config = load_config(example() / "kforge.toml");
  REQUIRE_MESSAGE(config.ok(), config.status().message());
  CHECK(config->llm.designer.provider == "replay");
  CHECK(config->llm.coder.provider == "replay");
  CHECK(config->llm.designer.recording == "recording.jsonl");
  CHECK(config->agent.cpu_devices == 0);
  CHECK(config->coordinator.verify_timeout_s < 300);
}
