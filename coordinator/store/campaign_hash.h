// A campaign's identity (CampaignRow::content_hash), made from what it runs. Implemented in
// store.cpp, beside migration 0006, which gives the campaigns of earlier databases this
// identity.
#pragma once

#include <string>
#include <string_view>

#include "common/sha256.h"
#include "coordinator/store/store.h"

namespace kforge {

// A campaign's content_hash (CampaignRow): SHA-256 over its workflow, its timing profile when
// it is not "kforge" and its search policy when it is not the default ("search:" +
// search_text, issue 17) (so that campaigns of earlier versions keep their hash), and then, in
// order, each
// task's spec fields (op_name, task_id, backend, arch, impl_type, framework, task_type,
// limit_steps, task_desc), candidate and, when set, its own search policy ("search:" +
// TaskSpec::search, an op's search table), each length-prefixed after the tag
// "kforge-campaign-v2"; 64 lowercase hex digits. A campaign submitted again has the same
// hash, so it is found instead of added twice (docs/campaigns.md "Identity").
//
// Earlier databases hold the FNV-1a 64 of the same serialisation tagged "kforge-campaign-v1"
// (16 hex digits): migration 0006 replaces each such hash that the campaign's stored tasks
// reproduce by this one, so that those campaigns are still recognised.
class CampaignHash {
 public:
  explicit CampaignHash(std::string_view workflow, std::string_view timing = "kforge",
                        std::string_view search = "");
  // The campaign's next task; `candidate` is what it verifies (verify_only), else "".
  void add(const TaskSpec& spec, std::string_view candidate);
  // REQUIRES: called once, after the last add().
  std::string hex();

 private:
  Sha256 sha_;
};

}  // namespace kforge
