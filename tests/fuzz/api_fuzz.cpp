// The operator API's router (coordinator/operator/api.h): request bodies (JSON parsing,
// task and campaign validation), paths and query parameters, on a real database holding a
// campaign with steps, an LLM call and an agent.
//
// Input: the first line is the request, "METHOD /path?key=value&key=value"; the rest is the
// body. An answer is never a 500 (bad input is the client's problem: a 4xx naming the field)
// and every JSON answer parses. Writes are rolled back after each input, so every input
// meets the same database.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>

#include "coordinator/operator/api.h"
#include "tests/fuzz/fuzz.h"

using namespace kforge;
using json = nlohmann::json;

namespace {

constexpr const char* kTask =
    "import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n        return x\n\n"
    "def get_inputs():\n    return [torch.randn(4)]\n";

// The router's backend on one database. Writes are committed while the database is seeded
// and rolled back afterwards.
class FuzzBackend : public ApiBackend {
 public:
  FuzzBackend(std::unique_ptr<Store> store, std::filesystem::path db)
      : store_(std::move(store)), db_(std::move(db)) {}
  Result<Store*> reader() override { return store_.get(); }
  Result<json> write(const WriteFn& fn) override {
    KF_RETURN_IF_ERROR(store_->begin());
    auto r = fn(*store_);
    if (r.ok() && seeding_) {
      KF_RETURN_IF_ERROR(store_->commit());
    } else {
      store_->rollback();
    }
    return r;
  }
  std::filesystem::path database_path() const override { return db_; }
  bool seeding_ = true;

 private:
  std::unique_ptr<Store> store_;
  std::filesystem::path db_;
};

std::filesystem::path g_dir;

void remove_dir() {
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
}

FuzzBackend& backend() {
  static FuzzBackend* b = [] {
    spdlog::set_level(spdlog::level::critical);  // a 500 is reported by the property below
    std::string tmpl = (std::filesystem::temp_directory_path() / "kforge-api-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) fuzz::fuzz_fail("mkdtemp failed");
    g_dir = tmpl;
    std::atexit(remove_dir);
    auto store = Store::open(g_dir / "kforge.db");
    if (!store.ok()) fuzz::fuzz_fail(store.status().message());
    Store& s = **store;
    auto* fb = new FuzzBackend(std::move(*store), g_dir / "kforge.db");
    json campaign = {{"name", "seed"},
                     {"tasks", json::array({{{"op_name", "relu"},
                                             {"task_id", "N=1024"},
                                             {"task_desc", kTask},
                                             {"backend", "cpu"},
                                             {"arch", "x86_64"},
                                             {"impl_type", "cpp"},
                                             {"framework", "torch"},
                                             {"task_type", "profile"}},
                                            {{"op_name", "gelu"},
                                             {"task_desc", kTask},
                                             {"backend", "cpu"},
                                             {"arch", "x86_64"},
                                             {"impl_type", "cpp"},
                                             {"framework", "torch"}}})}};
    ApiReply r = handle_api(ApiRequest{"POST", "/api/v1/campaigns", {}, campaign.dump()}, *fb);
    if (r.status != 201) fuzz::fuzz_fail("seeding the database: " + r.body);
    int64_t task = json::parse(r.body)["task_ids"][0].get<int64_t>();
    for (Role role : {Role::designer, Role::coder, Role::verifier}) {
      StepRow step;
      step.task_id = task;
      step.role = role;
      step.input = "prompt";
      step.output = role == Role::verifier
                        ? json{{"verdict", "passed"}, {"profile", {{"speedup", 2.5}}}}.dump()
                        : "```cpp\nint main() {}\n```";
      if (role == Role::verifier) step.verdict = Outcome::passed;
      if (!s.record_step(step).ok()) fuzz::fuzz_fail("seeding a step");
    }
    LlmCallRow call;
    call.task_id = task;
    call.role = Role::coder;
    call.request_key = "k1";
    call.status = LlmCallState::ok;
    if (!s.record_llm_call(call).ok()) fuzz::fuzz_fail("seeding an LLM call");
    AgentRow agent;
    agent.id = "agent-1";
    agent.host = "localhost";
    agent.incarnation = "inc";
    agent.state = AgentState::live;
    agent.capabilities = R"({"python":"3.11"})";
    DeviceRow device;
    device.agent_id = agent.id;
    device.backend = "cpu";
    device.arch = "x86_64";
    if (!s.upsert_agent(agent, {device}).ok()) fuzz::fuzz_fail("seeding an agent");
    fb->seeding_ = false;
    return fb;
  }();
  return *b;
}

ApiRequest parse_request(std::string_view input) {
  ApiRequest r;
  size_t eol = input.find('\n');
  std::string_view line = input.substr(0, eol);
  if (eol != std::string_view::npos) r.body = input.substr(eol + 1);
  size_t space = line.find(' ');
  r.method = line.substr(0, space);
  std::string_view target = space == std::string_view::npos ? "" : line.substr(space + 1);
  size_t q = target.find('?');
  r.path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    r.query[std::string(pair.substr(0, eq))] =
        eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ApiRequest request = parse_request(std::string_view(reinterpret_cast<const char*>(data), size));
  ApiReply reply = handle_api(request, backend());
  if (reply.status >= 500 && reply.status != 503) {
    fuzz::fuzz_fail(request.method + " " + request.path + " answered " +
                    std::to_string(reply.status) + ": " + reply.body);
  }
  if (reply.content_type == "application/json" &&
      json::parse(reply.body, nullptr, false).is_discarded()) {
    fuzz::fuzz_fail("an answer that is not JSON: " + reply.body.substr(0, 200));
  }
  return 0;
}
