// Campaign reports: what a campaign achieved, read from the store. The report document
// (JSON) is what `kforge report` and `GET /api/v1/campaigns/{id}/report` serve; report_html
// renders it as one self-contained page. Every field and metric is defined in
// docs/reports.md; the metrics follow KernelBench (fast_p, geometric-mean speedup).
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "coordinator/store/store.h"

namespace kforge {

// The version of the report document ("report_version"); fields are only ever added to it.
inline constexpr int kReportVersion = 1;
// Speedups above this are listed as suspicious (KernelBench's threshold; the harness's
// default suspicious_speedup). A speedup the harness itself flagged is listed too.
inline constexpr double kSuspiciousSpeedup = 10.0;
// The p of the fast_p rates the report gives (fast_0 is correctness alone).
inline constexpr std::array<double, 4> kFastP = {0, 1, 1.5, 2};

// The report document of campaign `campaign_id` (docs/reports.md): the campaign, task
// counts, fast_p for each p of kFastP over all tasks and over profiled tasks (with their
// denominators; pass@k and fast_p@k over the chains of a search of several), the
// geometric-mean speedup of correct profiled kernels, the best speedup so far by generation,
// suspicious speedups, one row per task (with its winner's lineage through parent_id), the
// steps-used distribution of passed tasks, the verdict of every verifier step, LLM usage
// (total and per role), device time and wall time.
//
// Every number is computed from the store; the document depends on nothing else (no clock),
// so the same store gives the same document. Each task's outcome comes from task_outcome()
// (coordinator/outcome.h), as in `kforge results`. Strings from the store are made valid
// UTF-8 (invalid bytes become U+FFFD), so dump() never throws on them. A value that does not
// exist (a rate of zero tasks, the geomean of no kernels) is null.
//
// Errors: not_found for an unknown campaign id (the message names it); a store failure is
// returned as the store reported it. Works on a read-only store (Store::open_readonly).
Result<nlohmann::json> campaign_report(Store& store, int64_t campaign_id);

// `report` (a campaign_report() document) as one self-contained HTML page: no external
// assets, no JavaScript. Summary cards, the fast_p (and pass@k) tables, inline SVG plots
// (speedups on a log2 axis with the 1x and 10x lines, steps used by passed tasks, verifier
// verdicts, the best speedup so far by generation), the winners' lineage, the suspicious
// speedups, LLM usage per role and the per-task table. Every string from the document is
// HTML-escaped. Fields missing from `report` or of the wrong type render as "–"; this
// function does not throw on any JSON value.
std::string report_html(const nlohmann::json& report);

// `report` as plain text for a terminal (`kforge report CAMPAIGN`): the fast_p table, pass@k
// and fast_p@k, the geomean, the best speedup so far by generation and each task's winner
// with its lineage. Like report_html, "–" for what is missing; it never throws.
std::string report_text(const nlohmann::json& report);

}  // namespace kforge
