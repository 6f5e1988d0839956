#include "cli/check.h"

#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "common/fs.h"
#include "common/text.h"
#include "common/toml_report.h"

namespace kforge {
namespace {

// The roles a workflow asks (Conductor: design, then code; coder_only codes at once).
std::vector<LlmRole> roles_of(Workflow workflow) {
  switch (workflow) {
    case Workflow::default_: return {LlmRole::designer, LlmRole::coder};
    case Workflow::coder_only: return {LlmRole::coder};
    case Workflow::verify_only: return {};
  }
  return {};
}

// "file:line:column: workflow: ..." where the campaign names its workflow (else line 1).
std::string missing_roles(const std::string& campaign_text, const std::string& source,
                          Workflow workflow, const LlmConfig& llm,
                          const std::optional<std::string>& config) {
  std::vector<std::string> missing;
  for (LlmRole role : roles_of(workflow)) {
    if (llm.of(role).provider.empty()) {
      missing.push_back("[llm." + std::string(to_string(role)) + "]");
    }
  }
  if (missing.empty()) return "";
  size_t line = 1;
  if (auto parsed = parse_toml(campaign_text, source); parsed.ok()) {
    if (const toml::node* n = parsed->get("workflow")) line = n->source().begin.line;
  }
  return source + ":" + std::to_string(line) + ":1: workflow: the " +
         std::string(to_string(workflow)) +
         " workflow asks an LLM: " + (config ? *config + " lacks " : "give a --config file with ") +
         join(missing, " and ") + " (docs/llm.md)";
}

}  // namespace

Result<CheckedInputs> check_inputs(const std::filesystem::path& campaign,
                                   const std::optional<std::string>& config, CheckFor what) {
  std::vector<std::string> problems;
  auto keep = [&](const Status& st) {
    if (!st.ok()) problems.push_back(st.message());
  };
  Result<Config> loaded = Config();
  std::filesystem::path config_dir = std::filesystem::current_path();
  if (config) {
    loaded =
        load_config(*config, what == CheckFor::submit ? ConfigChecks::file : ConfigChecks::host);
    keep(loaded.status());
    config_dir = std::filesystem::absolute(*config).parent_path();
  }
  auto text = read_named_file(campaign, "campaign file");
  keep(text.status());
  Result<CampaignPlan> plan = text.status();
  if (text.ok()) {
    plan = plan_campaign(*text, files_under(campaign.parent_path()), campaign.string(),
                         what != CheckFor::submit);
    keep(plan.status());
  }
  // Only with a sound config: a role it failed to read is reported already.
  if ((what == CheckFor::run || (what == CheckFor::check && config)) && plan.ok() && loaded.ok()) {
    std::string roles =
        missing_roles(*text, campaign.string(), plan->workflow(), loaded->llm, config);
    if (!roles.empty()) problems.push_back(roles);
  }
  if (!problems.empty()) return invalid_argument(join(problems, "\n"));
  return CheckedInputs{std::move(*text), std::move(*plan), std::move(*loaded), config_dir};
}

int check_failed(const Status& problems) {
  const std::string& m = problems.message();
  std::fprintf(stderr, "%s\n", m.c_str());
  const size_t n = static_cast<size_t>(std::count(m.begin(), m.end(), '\n')) + 1;
  return cli_fail(std::to_string(n) + (n == 1 ? " problem" : " problems") +
                  " found; nothing was created");
}

int cmd_check(const ParsedFlags& flags) {
  if (flags.positional.size() != 1) {
    return cli_fail(
        "check: give one campaign file, e.g. kforge check campaign.toml --config kforge.toml",
        kExitUsage);
  }
  const std::filesystem::path campaign = flags.positional[0];
  auto checked = check_inputs(campaign, flags.get("config"), CheckFor::check);
  if (!checked.ok()) return check_failed(checked.status());
  const CampaignPlan& plan = checked->plan;
  std::printf("%s: campaign %s, workflow %s, %zu tasks: ok\n", campaign.string().c_str(),
              plan.name().c_str(), to_string(plan.workflow()).data(), plan.size());
  if (auto config = flags.get("config")) {
    std::printf("%s: ok\n", config->c_str());
  } else if (plan.workflow() != Workflow::verify_only) {
    std::printf("no --config: the LLM roles the %s workflow asks were not checked\n",
                to_string(plan.workflow()).data());
  }
  return kExitOk;
}

}  // namespace kforge
