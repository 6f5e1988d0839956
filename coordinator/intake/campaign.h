// coordinator/intake/: how work enters -- campaign files (this file) and KernelBench
// imports (kernelbench.h), expanded into TaskSpecs the store keeps.
//
// Campaign files: one TOML file expanded into the tasks a campaign runs.
//
// A campaign names ops; each op names a task file (the reference, harness task format) and
// may sweep the file's module-level constants. Every op x sweep point becomes one TaskSpec
// whose task_desc is the task file with the swept constants rewritten, and whose task_id
// names the point ("N=4096,dtype=float16"; "default" without a sweep). docs/campaigns.md
// describes the format; the example:
//
//   name = "softmax-sweep"
//   workflow = "default"                 # default | coder_only | verify_only
//   [defaults]
//   backend = "cpu"
//   arch = "x86_64"
//   impl_type = "cpp"
//   [[ops]]
//   op_name = "softmax"
//   task_desc = "tasks/softmax.py"       # relative to the campaign file
//   [ops.sweep]
//   N = [1024, 4096]
//   dtype = ["float32", "float16"]
//
// Errors name the file, line, column and key and say what was expected, like the config
// file's (common/config.h), e.g.
//   sweep.toml:12:1: ops[0].sweep.M: op 'softmax': task file tasks/softmax.py has no
//   module-level constant 'M' (it has: N, batch_size, dtype)
// Every problem found is reported, one per line, in file order.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "coordinator/store/store.h"

namespace kforge {

struct CampaignTask {
  TaskSpec spec;
  std::string candidate;  // verify_only: the supplied candidate file's text; else empty
};

struct Campaign {
  std::string name;      // identifies the campaign (with content_hash: see below)
  std::string workflow;  // default | coder_only | verify_only
  // SHA-256 (64 hex digits) of what the campaign runs: workflow and every expanded task
  // (spec and candidate text), in order. Not the name, the file's formatting, comments or
  // location: the same name and hash twice is the same campaign submitted twice.
  std::string content_hash;
  // Ops in file order; an op's points in sweep order: keys sorted, values as listed, the
  // last key varying fastest.
  std::vector<CampaignTask> tasks;
  std::filesystem::path source;  // the campaign file (parse_campaign: source_name)
};

// Campaigns larger than this are refused (a typo in a sweep must not queue millions of tasks).
inline constexpr size_t kMaxCampaignTasks = 100000;

// Reads and expands a campaign file; relative paths in it are relative to its directory.
// not_found (naming the path) when the file does not exist; invalid_argument with
// "file:line:column: key: ..." lines for a bad campaign.
Result<Campaign> load_campaign(const std::filesystem::path& path);

// Parses campaign TOML text. Task and candidate paths are relative to `base_dir`;
// `source_name` stands for the file in error messages.
Result<Campaign> parse_campaign(std::string_view toml_text, const std::filesystem::path& base_dir,
                                const std::string& source_name);

// The campaign's content_hash (see Campaign): from its workflow and expanded tasks
// (CampaignHash, coordinator/store/campaign_hash.h).
std::string hash_campaign(const Campaign& campaign);

// How store_campaign writes: runs `fn` as one transaction (ApiBackend::write: one turn of the
// coordinator's loop; or Store::begin ... commit) and returns its status.
using CampaignWriter = std::function<Status(const std::function<Status(Store&)>& fn)>;

// Tasks per transaction when a campaign is stored.
inline constexpr size_t kCampaignBatch = 10000;

// Stores the campaign and its tasks unless one with the same content_hash is stored
// already. Returns (campaign id, true if it was created now).
//
// All or nothing, also for a campaign of a million tasks. A campaign of at most
// kCampaignBatch tasks is one transaction. A larger one is written kCampaignBatch tasks per
// transaction (each a call of `write`, so a coordinator's loop serves other work between
// them), with a log line per batch: the first adds the campaign in state `submitting`, the
// last sets it `running`. The Conductor starts no task of a submitting campaign. If a batch
// fails, the campaign is removed again (Store::discard_campaign); if the process dies
// mid-way, the next coordinator to start removes it (Store::discard_submitting_campaigns).
// Either way it never runs half, and submitting it again stores it anew.
Result<std::pair<int64_t, bool>> store_campaign(const CampaignWriter& write,
                                                const Campaign& campaign,
                                                const std::string& source);

// The workflows a campaign may name.
const std::vector<std::string>& campaign_workflows();

}  // namespace kforge
