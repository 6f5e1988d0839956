// A verification's result, typed: what the judge decided about one candidate.
//
// The judge writes one JSON document (docs/harness.md, "The verdict document"). The agent
// turns it into a VerifyResult once (verify_result_from_json), sends it as a msgpack struct
// (proto::JobResult::verify), and the coordinator stores and reads these fields; to_json
// gives the document back for people (kforge verify --json, the API) and for a verifier
// step's text, which the Store reads back as a VerifyResult once (StepRow::result).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/vocabulary.h"

namespace kforge {

// Times of one side of a profile, in microseconds.
struct TimingStats {
  double median_us = 0;
  double min_us = 0;
  double max_us = 0;
  double mean_us = 0;
  int64_t runs = 0;
  bool operator==(const TimingStats&) const = default;
};

// profile: profile jobs that passed.
struct Profile {
  TimingStats candidate;
  TimingStats reference;
  double speedup = 0;       // reference median / candidate median (may be +inf)
  bool suspicious = false;  // speedup above the job's suspicious_speedup
  std::string method;       // judge_clock, cuda_events, ...
  int64_t warmup = 0;       // warm-up calls per side
  std::string more;         // JSON object: the profile's other keys (worker_rtt_us, threads...)
  bool operator==(const Profile&) const = default;
};

// checks: the comparison summary.
struct Checks {
  int64_t mismatches = 0;    // elements failing the policy
  int64_t total = 0;         // elements compared
  double max_abs_error = 0;  // over elements finite in both (may be nan/inf)
  double max_rel_error = 0;
  std::string more;  // JSON object: the other keys (first_mismatches, dtype, policy...)
  bool operator==(const Checks&) const = default;
};

struct VerifyResult {
  Verdict verdict = Verdict::infra_error;
  std::string message;      // what a model can act on (rule broken, traceback, comparison)
  std::string input_error;  // non-empty only when the task or job itself is unusable
  std::string stage;        // the stage the verdict was reached in
  int64_t trials = 0;       // precision trials completed
  std::optional<Checks> checks;
  std::optional<Profile> profile;
  std::string details;  // JSON object: the document's other keys (versions, phases_ms, clock,
                        // job, worker...), for people; kforge does not interpret them
  bool operator==(const VerifyResult&) const = default;
};

// A result kforge itself decided (the job never reached a judge's verdict).
VerifyResult verify_failure(Verdict verdict, std::string message, std::string stage = "");

// The judge's document as a VerifyResult. Never fails: a document without a known verdict is
// an infra_error whose message says what was wrong (a typo must never pass). Numbers the
// harness wrote as "nan", "inf" or "-inf" become those doubles.
VerifyResult verify_result_from_json(const nlohmann::json& doc);
// The same from the document's text; text that is not a JSON object is an infra_error.
VerifyResult verify_result_from_text(std::string_view text);

// The document again (the keys of docs/harness.md; non-finite numbers as "nan"/"inf"/"-inf").
nlohmann::json to_json(const VerifyResult& r);
nlohmann::json to_json(const Checks& c);
nlohmann::json to_json(const Profile& p);

// Parses one stored JSON column written by to_json(Checks/Profile) ("" or bad text: none).
std::optional<Checks> checks_from_text(std::string_view text);
std::optional<Profile> profile_from_text(std::string_view text);

}  // namespace kforge
