// kforge-coordinator: owns the database, schedules jobs onto agents' devices.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <optional>
#include <thread>

#include "common/build_info.h"
#include "common/config.h"
#include "common/curve.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/process.h"
#include "coordinator/generation/conductor.h"
#include "coordinator/operator/http_server.h"
#include "coordinator/scheduling/coordinator.h"

namespace {

const std::vector<kforge::FlagSpec> kFlags = {
    {"config", true, "TOML configuration file (table [coordinator])"},
    {"listen", true, "ZeroMQ endpoint for agents (default tcp://127.0.0.1:7700)"},
    {"data", true, "data directory holding kforge.db (default kforge-data)"},
    {"http", true, "operator API and dashboard on HOST:PORT (default 127.0.0.1:7780; '' for none)"},
    {"log-level", true, "trace|debug|info|warn|error"},
    {"prompts", true, "prompt template directory (default: found)"},
    {"log-json", false, "log JSON lines"},
    {"help", false, "show this message"},
    {"version", false, "print the version and the commit it was built from"},
};

kforge::Coordinator* g_coordinator = nullptr;
void on_signal(int) {
  if (g_coordinator) g_coordinator->stop();
}

int fail(const std::string& message) {
  std::fprintf(stderr, "kforge-coordinator: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kforge;
  auto flags = parse_flags(argc, argv, 1, kFlags, "kforge-coordinator");
  if (!flags.ok()) {  // the message names the program already
    std::fprintf(stderr, "%s\n", flags.status().message().c_str());
    return 2;
  }
  if (flags->has("version")) {
    std::printf("%s\n", version_line("kforge-coordinator").c_str());
    return 0;
  }
  if (flags->has("help")) {
    std::printf("%s", flags_help(kFlags, "usage: kforge-coordinator [options]").c_str());
    return 0;
  }
  Config config;
  std::filesystem::path config_dir = std::filesystem::current_path();
  if (auto path = flags->get("config")) {
    auto loaded = load_config(*path);
    if (!loaded.ok()) return fail(loaded.status().message());
    config = *loaded;
    config_dir = std::filesystem::absolute(*path).parent_path();
  }
  CoordinatorConfig& cc = config.coordinator;
  if (auto v = flags->get("listen")) cc.listen = *v;
  if (auto v = flags->get("data")) cc.data_dir = *v;
  if (auto v = flags->get("http")) cc.http_listen = *v;
  if (auto v = flags->get("log-level")) cc.log.level = *v;
  if (flags->has("log-json")) cc.log.json = true;
  if (Status st = init_logging(cc.log, "coordinator"); !st.ok()) return fail(st.message());

  // A bad API address or token file is refused before anything opens; the token is created
  // in the data directory at the first start unless api_token_file names one.
  std::optional<HttpServerOptions> http;
  if (!cc.http_listen.empty()) {
    auto checked = operator_api_options(cc);
    if (!checked.ok()) return fail(checked.status().message());
    http = *checked;
  }

  auto options = coordinator_options(cc);
  if (!options.ok()) return fail(options.status().message());
  if (!options->curve_secret_key.empty()) {
    spdlog::info("agent link: CURVE, coordinator public key {}",
                 curve_public_key(options->curve_secret_key).value_or("?"));
  }
  // It holds the LLM keys, its CURVE secret key and the API token: other processes of its uid
  // may not read its memory (/proc/PID/environ, mem, ptrace).
  if (Status st = hide_process_memory(); !st.ok()) return fail(st.message());
  auto coordinator = Coordinator::open(*options);
  if (!coordinator.ok()) return fail(coordinator.status().message());
  // The Conductor drives the tasks of every campaign in the database (kforge submit adds
  // them); without [llm.*] roles only verify_only campaigns can make progress.
  ConductorOptions conductor_options = kforge::conductor_options(config, config_dir);
  std::unique_ptr<LlmClient> llm;
  if (!conductor_options.endpoints.empty()) {
    auto client = LlmClient::create(conductor_options.endpoints);
    if (!client.ok()) return fail("llm: " + client.status().message());
    llm = std::move(client.value());
  }
  auto prompt_dir = find_prompt_dir(flags->get("prompts").value_or(""));
  if (!prompt_dir.ok()) return fail(prompt_dir.status().message());
  auto prompts = PromptLibrary::load(*prompt_dir);
  if (!prompts.ok()) return fail(prompts.status().message());
  Conductor conductor(**coordinator, llm.get(), std::move(prompts.value()), conductor_options);
  // Tasks other processes added or cancelled (kforge submit): looked at when the store says
  // another connection committed, not on a timer.
  (*coordinator)->add_change_listener([&] {
    if (Status st = conductor.resume_all(); !st.ok())
      spdlog::error("conductor: {}", st.to_string());
  });
  std::optional<OperatorApi> api;
  if (http) {
    auto served = serve_operator_api(**coordinator, conductor, *http);
    if (!served.ok()) return fail(served.status().message());
    api = std::move(served.value());
  }
  g_coordinator = coordinator->get();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // The bound endpoint on stdout, for scripts that asked for port '*'.
  std::printf("listening %s\n", (*coordinator)->endpoint().c_str());
  if (api) {
    std::printf("api %s\n", api->server->url().c_str());
    // The dashboard's URL carries the token: on a terminal only, never into a log or journal.
    if (::isatty(STDOUT_FILENO)) {
      std::printf("dashboard %s\n", api->server->dashboard_url().c_str());
    } else {
      std::printf("dashboard %s/ (token in %s; `kforge dashboard` prints the URL with it)\n",
                  api->server->url().c_str(), api->server->token_file().c_str());
    }
  }
  std::fflush(stdout);
  Status st = (*coordinator)->run();
  g_coordinator = nullptr;
  api.reset();
  if (!st.ok()) return fail(st.message());
  return 0;
}
