// The campaign parser (coordinator/intake/campaign.h): any TOML text gives a Campaign or an
// error naming the file; it never throws or crashes. Task and candidate paths resolve
// against tests/fixtures/campaigns (tasks/softmax.py, tasks/relu.py, cands/softmax.py), so
// the seeds expand real sweeps. An accepted campaign holds 1 to kMaxCampaignTasks tasks,
// each valid by validate_task_spec, with the content hash of what it runs.
#include <cstdint>
#include <string_view>

#include "coordinator/generation/task.h"
#include "coordinator/intake/campaign.h"
#include "tests/fuzz/fuzz.h"

using namespace kforge;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto campaign = parse_campaign(text, KFORGE_SOURCE_DIR "/tests/fixtures/campaigns", "fuzz.toml");
  if (!campaign.ok()) {
    if (campaign.status().message().find("fuzz.toml") == std::string::npos) {
      fuzz::fuzz_fail("a campaign error that does not name the file: " +
                      campaign.status().message());
    }
    return 0;
  }
  if (campaign->tasks.empty() || campaign->tasks.size() > kMaxCampaignTasks) {
    fuzz::fuzz_fail("an accepted campaign of " + std::to_string(campaign->tasks.size()) + " tasks");
  }
  for (const CampaignTask& t : campaign->tasks) {
    TaskSpec spec = t.spec;
    spec.candidate = t.candidate;
    if (Status st = validate_task_spec(spec, campaign->workflow); !st.ok()) {
      fuzz::fuzz_fail("an accepted campaign's task fails validate_task_spec: " + st.message());
    }
  }
  if (hash_campaign(*campaign) != campaign->content_hash)
    fuzz::fuzz_fail("content_hash is not hash_campaign");
  return 0;
}
