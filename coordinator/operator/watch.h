// What an operator watching a run reads beyond the API's objects (schema/api.md): a
// campaign's progress (elapsed, rate, ETA, queue, ended tasks over time, stalled or not), the
// alerts (lost agents, stalled campaigns, the disk), the LLM's health, and two campaigns
// compared task by task. Each is aggregated here, on the server, through indexes: the
// dashboard never fetches a campaign's tasks to compute them.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"
#include "coordinator/store/store.h"

namespace kforge {

// A campaign with unfinished tasks and no change (a task's state, a running task's step) for
// this long is stalled.
inline constexpr int64_t kDefaultStallS = 900;

// GET /api/v1/campaigns/{id}/progress: `buckets` (0 leaves "outcomes" out) buckets from the
// campaign's start to now (or its last change, once it has ended).
Result<nlohmann::json> campaign_progress(Store& store, const CampaignRow& campaign, int64_t buckets,
                                         int64_t now_ms, int64_t stall_s);

// GET /api/v1/alerts: lost agents, stalled campaigns, then `alarms` (the health endpoint's).
Result<nlohmann::json> alerts(Store& store, const nlohmann::json& alarms, int64_t now_ms,
                              int64_t stall_s);

// GET /api/v1/llm: this process's LLM counters, read from `metrics_text` (the Prometheus lines
// of a running coordinator; "" from the command line), and the calls stored for `campaign_id`
// (0: every campaign).
Result<nlohmann::json> llm_health(Store& store, const std::string& metrics_text,
                                  int64_t campaign_id);

// GET /api/v1/compare: campaign `a`'s tasks after `after_id` (at most `limit`), each beside
// campaign `b`'s task of the same op_name, task_id and target. `next_after` is set when the
// page is full.
Result<nlohmann::json> compare_campaigns(Store& store, const CampaignRow& a, const CampaignRow& b,
                                         int64_t after_id, int64_t limit,
                                         std::optional<int64_t>* next_after);

}  // namespace kforge
