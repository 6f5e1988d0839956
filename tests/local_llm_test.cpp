// docs/llm.md's "A local model server": the local-llm.toml it tells users to write, taken from
// the docs as it is (only base_url pointed at the fake OpenAI-compatible server that stands in
// for vLLM, SGLang or Ollama), runs a campaign with `kforge run`.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/process.h"
#include "tests/support/child.h"
#include "tests/support/fake_llm.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;

namespace {

// The block after the marker "<!-- local-llm.toml:" in docs/llm.md.
std::string documented_config() {
  const std::string docs = kforge::test::read_file(source_dir() / "docs" / "llm.md");
  auto at = docs.find("<!-- local-llm.toml:");
  REQUIRE_MESSAGE(at != std::string::npos, "docs/llm.md lost its local-llm.toml block");
  auto open = docs.find("```toml\n", at);
  REQUIRE(open != std::string::npos);
  open += std::string("```toml\n").size();
  auto close = docs.find("\n```", open);
  REQUIRE(close != std::string::npos);
  return docs.substr(open, close - open + 1);
}

}  // namespace

TEST_CASE(
    "docs/llm.md's local-llm.toml, as written, runs a campaign against an OpenAI-compatible "
    "server") {
  const std::string documented_url = "http://127.0.0.1:8000/v1";
  const std::string documented_model = "Qwen/Qwen2.5-Coder-7B-Instruct";
  TempDir dir;
  FakeLlmServer llm;
  const std::string candidate = kforge::test::read_file(source_dir() / "tests" / "harness" /
                                                        "candidates" / "sqrt_numpy_cpp_ok.py");
  REQUIRE_FALSE(candidate.empty());
  // One answer fits both roles: a design for the Designer, code for the Coder.
  llm.set_responder([&](const nlohmann::json&) {
    return "Design:\n```aul\nfor i in tiles(N, 256): out[i] = sqrt(x[i])\n```\nCode:\n```python\n" +
           candidate + "\n```\n";
  });

  std::string config = documented_config();
  int replaced = 0;
  for (size_t p = config.find(documented_url); p != std::string::npos;
       p = config.find(documented_url, p + llm.base_url().size())) {
    config.replace(p, documented_url.size(), llm.base_url());
    ++replaced;
  }
  CHECK(replaced == 2);  // the designer's and the coder's
  write_file(dir / "local-llm.toml", config);
  write_file(
      dir / "campaign.toml",
      "name = \"local\"\n[defaults]\nbackend = \"cpu\"\narch = \"x86_64\"\nimpl_type = \"cpp\"\n"
      "framework = \"numpy\"\ntask_type = \"precision_only\"\n[[ops]]\nop_name = "
      "\"sqrt\"\ntask_desc = \"" +
          (source_dir() / "tests" / "harness" / "tasks" / "sqrt_numpy.py").string() + "\"\n");

  auto kforge = binary_dir() / "cli" / "kforge";
  auto data = dir / "data";
  Child run(kforge,
            {"run", (dir / "campaign.toml").string(), "--data", data.string(), "--config",
             (dir / "local-llm.toml").string(), "--device-fixtures", (dir / "no-gpus").string()},
            dir / "run.log", dir.path());
  REQUIRE_MESSAGE(wait_until([&] { return !run.running(); }, 240s),
                  kforge::test::read_file(dir / "run.log"));
  REQUIRE_MESSAGE(WIFEXITED(run.wait_status()), kforge::test::read_file(dir / "run.log"));
  CHECK_MESSAGE(WEXITSTATUS(run.wait_status()) == 0, kforge::test::read_file(dir / "run.log"));

  // The Designer and the Coder asked the server as the docs configured them.
  auto requests = llm.requests();
  REQUIRE(requests.size() == 2);
  for (const FakeRequest& r : requests) {
    CHECK(r.method == "POST");
    CHECK(r.path == "/v1/chat/completions");
    CHECK(r.body["model"] == documented_model);
  }
  ProcessSpec spec;
  spec.argv = {kforge.string(), "results", "--json", "--data", data.string()};
  auto r = run_process(spec);
  REQUIRE(r.ok());
  REQUIRE_MESSAGE(r->exit_code == 0, r->stderr_data);
  auto doc = nlohmann::json::parse(r->stdout_data);
  REQUIRE(doc.size() == 1);
  CHECK(doc[0]["state"] == "passed");
}
