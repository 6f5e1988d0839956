// coordinator/intake/: how work enters -- campaign files (this file) and KernelBench
// imports (kernelbench.h), expanded into TaskSpecs the store keeps; the task files' Python
// constants that sweeps rewrite (python_constants.h).
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
//   timing = "kforge"                    # kforge | kernelbench: profile trials and runs
//   [search]                             # optional (search.h): fix_loop when left out
//   strategy = "best_of_n"
//   samples = 4
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
//   [ops.search]                         # optional: this op's search over the campaign's
//   strategy = "evolve"                  # (TaskSpec::search)
//
// Errors name the file, line, column and key and say what was expected, like the config
// file's (common/config.h), e.g.
//   sweep.toml:12:1: ops[0].sweep.M: op 'softmax': task file tasks/softmax.py has no
//   module-level constant 'M' (it has: N, batch_size, dtype)
// Every problem found is reported, one per line, in file order.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "coordinator/generation/search.h"
#include "coordinator/store/store.h"

namespace kforge {

struct CampaignTask {
  TaskSpec spec;
  std::string candidate;  // verify_only: the supplied candidate file's text; else empty
};

struct Campaign {
  std::string name;  // identifies the campaign (with content_hash: see below)
  Workflow workflow = Workflow::default_;
  std::string timing = "kforge";  // kforge | kernelbench (timing_profiles, common/verify_job.h)
  SearchPolicy search;            // the [search] table (search.h); default: fix_loop
  // SHA-256 (64 hex digits) of what the campaign runs: workflow, timing, search (when not the
  // default) and every expanded task
  // (spec and candidate text), in order. Not the name, the file's formatting, comments or
  // location: the same name and hash twice is the same campaign submitted twice.
  std::string content_hash;
  // Ops in file order; an op's points in sweep order: keys sorted, values as listed, the
  // last key varying fastest.
  std::vector<CampaignTask> tasks;
  std::filesystem::path source;  // the campaign file (parse_campaign: source_name)
};

// Campaigns larger than this are refused (a typo in a sweep must not queue more).
inline constexpr size_t kMaxCampaignTasks = 1000000;

// Reads and expands a campaign file; relative paths in it are relative to its directory.
// not_found (naming the path) when the file does not exist; invalid_argument with
// "file:line:column: key: ..." lines for a bad campaign. Holds every task in memory: for
// campaigns of up to a few thousand tasks (kforge run, tests); plan_campaign for any size.
Result<Campaign> load_campaign(const std::filesystem::path& path);

// Parses campaign TOML text. Task and candidate paths are relative to `base_dir`;
// `source_name` stands for the file in error messages.
Result<Campaign> parse_campaign(std::string_view toml_text, const std::filesystem::path& base_dir,
                                const std::string& source_name);

// The campaign's content_hash (see Campaign): from its workflow and expanded tasks
// (CampaignHash, coordinator/store/campaign_hash.h).
std::string hash_campaign(const Campaign& campaign);

// How a plan reads a file the campaign names, by its path as written there: its text, or a
// Status whose message completes "task file 'x' ..." (e.g. "does not exist (looked for
// /abs/x)", "was not sent with the campaign").
using CampaignFileReader = std::function<Result<std::string>(const std::string& written)>;

// The reader of files on this host, relative to `base_dir` (load_campaign's).
CampaignFileReader files_under(const std::filesystem::path& base_dir);

// A campaign file read and checked, not expanded: its tasks are produced on demand, in
// order, so that no side of a submission holds more than a batch of them (issue 21). Every
// check parse_campaign makes is made by plan_campaign, which walks every task once (to check
// it and to compute content_hash) without keeping any. Copies share one immutable plan.
class CampaignPlan {
 public:
  const std::string& name() const;
  Workflow workflow() const;
  const std::string& timing() const;
  const SearchPolicy& search() const;
  const std::string& content_hash() const;  // hash_campaign of the expansion (walked plans)
  size_t size() const;                      // how many tasks it expands to
  // The files it names (task files, candidates), by their path as written, with their text:
  // what `kforge submit` sends with the campaign file.
  const std::map<std::string, std::string>& files() const;
  // Calls `each` with tasks [begin, end) of the expansion (the order of Campaign::tasks)
  // and stops at its first error. REQUIRES: begin <= end <= size().
  Status expand(size_t begin, size_t end, const std::function<Status(CampaignTask&&)>& each) const;

  struct Impl;
  explicit CampaignPlan(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<const Impl> impl_;
};

// Reads and checks campaign TOML text whose files come from `read`; `source_name` stands
// for the file in messages. Errors as parse_campaign's. Without `walk_tasks` the tasks are
// not walked: the file, its files, its ops and its size are checked, but not each task
// (validate_task_spec, repeats), and content_hash() is empty: what `kforge submit` checks
// before it sends the file to a coordinator, which walks them (a million tasks take seconds).
Result<CampaignPlan> plan_campaign(std::string_view toml_text, const CampaignFileReader& read,
                                   const std::string& source_name, bool walk_tasks = true);

// How store_campaign writes: runs `fn` as one transaction (ApiBackend::write: one turn of the
// coordinator's loop; or Store::begin ... commit) and returns its status.
using CampaignWriter = std::function<Status(const std::function<Status(Store&)>& fn)>;

// The verdict of the tasks of a campaign cancelled while it was `submitting`. Such a
// campaign stays cancelled: its stored part never runs (resuming it or one of its tasks is
// refused), and storing the same campaign again is refused rather than resumed.
inline constexpr std::string_view kCancelledWhileSubmitting =
    "cancelled by operator while its campaign was being submitted";

// Tasks per transaction when a campaign is stored.
inline constexpr size_t kCampaignBatch = 10000;

// Stores the campaign and its tasks unless one with the same content_hash is stored
// already. Returns (campaign id, true if tasks were stored now).
//
// Never runs half, also for a campaign of a million tasks. A campaign of at most
// kCampaignBatch tasks is one transaction. A larger one is written kCampaignBatch tasks per
// transaction (each a call of `write`, so a coordinator's loop serves other work between
// them), with a log line per batch: the first adds the campaign in state `submitting`, the
// last sets it `running`. The Conductor starts no task of a submitting campaign. If a batch
// fails or the process dies mid-way, the campaign stays `submitting` with the batches
// committed so far; storing the same campaign again (same content_hash) resumes it after
// them: no task is stored twice. A submission this process (this Store) is still making is
// not resumed by a second one: that answers (id, false). A campaign cancelled while
// submitting stops there (failed_precondition), and storing it again is refused
// (failed_precondition, kCancelledWhileSubmitting).
Result<std::pair<int64_t, bool>> store_campaign(const CampaignWriter& write,
                                                const CampaignPlan& plan,
                                                const std::string& source);
// The same for a campaign expanded in memory.
Result<std::pair<int64_t, bool>> store_campaign(const CampaignWriter& write,
                                                const Campaign& campaign,
                                                const std::string& source);

}  // namespace kforge
