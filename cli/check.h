// kforge check: every problem of a campaign and its config in one pass, before anything is
// created. `kforge run` and `kforge submit` make the same check first (docs/cli.md).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/status.h"
#include "coordinator/intake/campaign.h"

namespace kforge {

// What the check is for.
enum class CheckFor {
  run,     // kforge run: tasks walked, [llm.*] checked against this host (ConfigChecks::host)
           // and against the campaign's workflow (no config: a workflow that asks an LLM fails)
  check,   // kforge check: the same, but without a config the LLM roles are not checked
  submit,  // kforge submit: the coordinator walks the tasks and calls the LLM; the config
           // (its [cli] table) is checked as a file only
};

struct CheckedInputs {
  std::string campaign_text;
  CampaignPlan plan;
  Config config;                     // the defaults without a config file
  std::filesystem::path config_dir;  // the config file's directory, else the working one
};

// Reads and checks the campaign file and, when given, the config file. invalid_argument
// listing every problem found, one "file:line:column: key: ..." per line: the config's in
// file order, then the campaign's, then those between the two (a workflow whose LLM roles
// the config lacks). Reads files only; creates nothing.
Result<CheckedInputs> check_inputs(const std::filesystem::path& campaign,
                                   const std::optional<std::string>& config, CheckFor what);

// Prints check_inputs' problems, one a line, and how many there were, to stderr; returns
// kExitFailed.
int check_failed(const Status& problems);

}  // namespace kforge
