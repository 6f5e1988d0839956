// The typed vocabularies (common/vocabulary.h) and the typed verification result
// (common/verify_result.h): one verdict list shared with the harness, documents read once
// and given back with their meaning, and the result's msgpack form on the wire.
#include "common/verify_result.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "common/protocol.h"
#include "common/vocabulary.h"
#include "tests/support/support.h"

using namespace kforge;
using nlohmann::json;

namespace {

// Runs `command` and returns its stdout (the harness's own Python, a real child process).
std::string run_output(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  REQUIRE(::pclose(p) == 0);
  return out;
}

template <class E>
void check_names_round_trip() {
  for (E e : all_of<E>()) {
    CAPTURE(to_string(e));
    CHECK(parse_enum<E>(to_string(e)) == e);
  }
  CHECK_FALSE(parse_enum<E>("").has_value());
  CHECK_FALSE(parse_enum<E>("no such name").has_value());
}

}  // namespace

TEST_CASE("the C++ verdict list is the harness's, in the same order") {
  const std::string harness = (test::source_dir() / "agent" / "harness").string();
  std::string out = run_output(
      "/usr/bin/python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); "
      "from kforge_verifier import verdicts; print(\" \".join(verdicts.ALL))' '" +
      harness + "'");
  std::string ours;
  for (Verdict v : all_of<Verdict>()) ours += (ours.empty() ? "" : " ") + std::string(to_string(v));
  CHECK(out == ours + "\n");
}

TEST_CASE("every vocabulary's names parse back to their enumerator") {
  check_names_round_trip<Verdict>();
  check_names_round_trip<Outcome>();
  check_names_round_trip<JobKind>();
  check_names_round_trip<JobState>();
  check_names_round_trip<TaskState>();
  check_names_round_trip<CampaignState>();
  check_names_round_trip<AgentState>();
  check_names_round_trip<Workflow>();
  check_names_round_trip<Role>();
  check_names_round_trip<LlmRole>();
  check_names_round_trip<LlmCallState>();
  CHECK(to_string(Workflow::default_) == "default");
  CHECK(to_string(TaskState::cancelled) == "cancelled");
}

TEST_CASE("JSON spells an enumerator by its name, never its number") {
  const nlohmann::json j = {{"state", CampaignState::submitting},
                            {"workflow", Workflow::default_},
                            {"role", Role::coder}};
  CHECK(j.dump() == R"({"role":"coder","state":"submitting","workflow":"default"})");
}

TEST_CASE("a verdict document is read once and given back with its meaning") {
  json doc = json::parse(R"({"verdict": "passed", "message": "ok", "input_error": "",
    "stage": "profile", "trials": 3,
    "checks": {"max_abs_error": 1e-6, "max_rel_error": "nan", "mismatches": 0, "total": 30,
               "dtype": "float32"},
    "profile": {"candidate": {"median_us": 4.0, "min_us": 3.5, "max_us": 5.0, "mean_us": 4.1, "runs": 50},
                "reference": {"median_us": 9.0, "min_us": 8.0, "max_us": 10.0, "mean_us": 9.2, "runs": 50},
                "speedup": 2.25, "suspicious": false, "method": "judge_clock", "warmup": 5,
                "worker_rtt_us": 20.0, "threads": 1},
    "versions": {"python": "3.11.2"}, "reference_cached": true})");
  VerifyResult r = verify_result_from_json(doc);
  CHECK(r.verdict == Verdict::passed);
  CHECK(r.stage == "profile");
  CHECK(r.trials == 3);
  REQUIRE(r.checks);
  CHECK(r.checks->total == 30);
  CHECK(std::isnan(r.checks->max_rel_error));
  REQUIRE(r.profile);
  CHECK(r.profile->speedup == 2.25);
  CHECK(r.profile->reference.median_us == 9.0);
  CHECK(r.profile->method == "judge_clock");
  // Given back, it is the same document: every key and value, "nan" still a string.
  CHECK(to_json(r) == doc);
}

TEST_CASE("a document without a known verdict is an infra_error, never a pass") {
  VerifyResult none = verify_result_from_text("not json");
  CHECK(none.verdict == Verdict::infra_error);
  CHECK(none.message == "the job produced no verdict document");
  CHECK(verify_result_from_json(json{{"message", "hi"}}).verdict == Verdict::infra_error);
  VerifyResult typo = verify_result_from_json(json{{"verdict", "pased"}, {"message", "all good"}});
  CHECK(typo.verdict == Verdict::infra_error);
  CHECK(typo.message == "the verdict document has an unknown verdict \"pased\": all good");
  CHECK(verify_result_from_json(json{{"verdict", 1}}).verdict == Verdict::infra_error);
}

TEST_CASE("a verification result crosses the wire as a msgpack struct") {
  proto::JobResult r;
  r.job = {7, 2};
  r.agent_id = "agent-a";
  r.exit_code = 0;
  r.verify = verify_result_from_json(json::parse(R"({"verdict": "precision_mismatch",
    "message": "differs", "stage": "precision", "trials": 1,
    "checks": {"max_abs_error": 3.5, "max_rel_error": 1.0, "mismatches": 4, "total": 10,
               "first_mismatches": [{"index": [1], "expected": 1.0, "actual": 4.5}]},
    "job": {"op_name": "relu"}})"));
  std::string bytes = proto::encode(r);
  auto frame = proto::decode(bytes);
  REQUIRE_MESSAGE(frame.ok(), frame.status().to_string());
  const auto& back = std::get<proto::JobResult>(frame->message);
  CHECK(back == r);
  REQUIRE(back.verify);
  CHECK(back.verify->checks->mismatches == 4);
  CHECK(to_json(*back.verify) == to_json(*r.verify));
  // The verdict is a str on the wire; one the receiver does not know rejects the frame with
  // the field's path rather than being taken for another verdict.
  std::string needle = "precision_mismatch";
  std::string bad = bytes;
  size_t at = bad.find(needle);
  REQUIRE(at != std::string::npos);
  bad.replace(at, needle.size(), "precision_mismatcX");
  auto rejected = proto::decode(bad);
  REQUIRE_FALSE(rejected.ok());
  CHECK(rejected.status().message() ==
        "field 'b.verify.verdict': unknown verdict 'precision_mismatcX'");
}

TEST_CASE("a result without a verification leaves the field out of the frame") {
  proto::JobResult r;
  r.job = {1, 1};
  std::string bytes = proto::encode(r);
  CHECK(bytes.find("verify") == std::string::npos);
  auto frame = proto::decode(bytes);
  REQUIRE(frame.ok());
  CHECK_FALSE(std::get<proto::JobResult>(frame->message).verify);
}
