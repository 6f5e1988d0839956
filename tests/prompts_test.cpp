#include "coordinator/generation/prompts.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <string>

#include "tests/support/fixtures.h"
#include "tests/support/support.h"

using namespace kforge;

namespace {

std::filesystem::path shipped() {
  return test::source_dir() / "prompts";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A value for every placeholder, each recognisable in the output.
std::map<std::string, std::string> all_values() {
  std::map<std::string, std::string> v;
  for (const std::string& p : prompt_placeholders()) v[p] = "<" + p + " value>";
  return v;
}

// A prompt directory holding copies of the shipped templates, for tests that break one.
void copy_shipped(const std::filesystem::path& to) {
  std::filesystem::copy(shipped(), to, std::filesystem::copy_options::recursive);
}

const char* kModelNew =
    "import torch\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
    "        return x\n";

}  // namespace

TEST_CASE("every shipped template renders with all placeholders provided") {
  Result<PromptLibrary> lib = PromptLibrary::load(shipped());
  REQUIRE_MESSAGE(lib.ok(), lib.status().to_string());
  for (const std::string& name : required_prompt_templates()) CHECK(lib->has(name));
  for (const std::string& name : lib->names()) {
    Result<std::string> text = lib->render(name, all_values());
    REQUIRE_MESSAGE(text.ok(), text.status().to_string());
    CHECK_FALSE(contains(*text, "{{"));
    CHECK(text->size() > 100);
  }
}

TEST_CASE("the role templates use the placeholders their role needs") {
  Result<PromptLibrary> lib = PromptLibrary::load(shipped());
  REQUIRE(lib.ok());
  auto uses = [&](const std::string& name, const std::string& p) {
    auto all = lib->placeholders_of(name);
    return std::find(all.begin(), all.end(), p) != all.end();
  };
  for (const char* name :
       {"designer", "designer_fix", "coder", "coder_fix", "coder_improve", "conductor"}) {
    CHECK(uses(name, "task_desc"));
    CHECK(uses(name, "op_name"));
  }
  CHECK(uses("designer", "aul_reference"));
  CHECK(uses("coder", "design"));
  CHECK(uses("coder", "candidate_contract"));
  CHECK(uses("coder_fix", "previous_code"));
  CHECK(uses("coder_fix", "verifier_message"));
  CHECK(uses("coder_fix", "suggestions"));
  CHECK(uses("coder_improve", "previous_code"));
  CHECK(uses("coder_improve", "verifier_message"));
  CHECK(uses("coder_improve", "inspirations"));
  CHECK(uses("designer_fix", "suggestions"));
  CHECK(uses("conductor", "verifier_message"));
}

TEST_CASE("task_values fills the shared placeholders for every impl_type") {
  Result<PromptLibrary> lib = PromptLibrary::load(shipped());
  REQUIRE(lib.ok());
  for (const char* impl : {"triton", "cuda_c", "cpp", "swft"}) {
    TaskSpec spec = test::task_spec("softmax", "N=4096");
    spec.backend = "cpu";
    spec.arch = "x86_64";
    spec.impl_type = impl;
    Result<std::map<std::string, std::string>> v = lib->task_values(spec);
    REQUIRE_MESSAGE(v.ok(), v.status().to_string());
    CHECK(contains(v->at("candidate_contract"), "ModelNew"));
    CHECK(contains(v->at("candidate_contract"), "softmax_" + std::string(impl) + "_torch"));
    CHECK_FALSE(v->at("impl_notes").empty());
    CHECK(contains(v->at("aul_reference"), "kernel"));
    (*v)["design"] = "d";
    (*v)["previous_code"] = "c";
    (*v)["verifier_message"] = "m";
    (*v)["suggestions"] = "s";
    (*v)["inspirations"] = "i";
    for (const char* role :
         {"designer", "designer_fix", "coder", "coder_fix", "coder_improve", "conductor"}) {
      Result<std::string> text = lib->render(role, *v);
      CHECK_MESSAGE(text.ok(), text.status().to_string());
    }
  }
  TaskSpec cpp;
  cpp.impl_type = "cpp";
  Result<std::map<std::string, std::string>> v = lib->task_values(cpp);
  REQUIRE(v.ok());
  CHECK(contains(v->at("candidate_contract"), "kforge_cpp.build"));
  CHECK(contains(v->at("candidate_contract"), "ctypes"));
}

TEST_CASE("a missing value is an error naming the template and the placeholder") {
  Result<PromptLibrary> lib = PromptLibrary::load(shipped());
  REQUIRE(lib.ok());
  auto values = all_values();
  values.erase("design");
  Result<std::string> text = lib->render("coder", values);
  REQUIRE_FALSE(text.ok());
  CHECK(text.status().code() == Code::invalid_argument);
  CHECK(text.status().message() == "prompt template 'coder': no value for placeholder {{design}}");
  Result<std::string> unknown = lib->render("poet", values);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().code() == Code::not_found);
}

TEST_CASE("a template with an unknown placeholder does not load") {
  test::TempDir dir;
  copy_shipped(dir / "p");
  test::write_file(dir / "p/coder.md", "line one\nuse {{ op_name }} and {{opname}}\n");
  Result<PromptLibrary> lib = PromptLibrary::load(dir / "p");
  REQUIRE_FALSE(lib.ok());
  CHECK(contains(lib.status().message(),
                 "coder.md:2: unknown placeholder {{opname}}; known: op_name"));
  test::write_file(dir / "p/coder.md", "a {{ op_name\n}}");
  CHECK(contains(PromptLibrary::load(dir / "p").status().message(), "without a closing"));
}

TEST_CASE("values are inserted verbatim, not scanned for placeholders") {
  test::TempDir dir;
  copy_shipped(dir / "p");
  test::write_file(dir / "p/coder.md", "[{{ op_name }}]");
  Result<PromptLibrary> lib = PromptLibrary::load(dir / "p");
  REQUIRE(lib.ok());
  Result<std::string> text = lib->render("coder.md", {{"op_name", "{{design}}"}});
  REQUIRE(text.ok());
  CHECK(*text == "[{{design}}]");
}

TEST_CASE("a prompt directory lacking a required template does not load") {
  test::TempDir dir;
  copy_shipped(dir / "p");
  std::filesystem::remove(dir / "p/notes/swft.md");
  Result<PromptLibrary> lib = PromptLibrary::load(dir / "p");
  REQUIRE_FALSE(lib.ok());
  CHECK(contains(lib.status().message(), "lacks notes/swft.md"));
}

TEST_CASE("find_prompt_dir: configured, then $KFORGE_PROMPT_DIR") {
  Result<std::filesystem::path> configured = find_prompt_dir(shipped());
  REQUIRE(configured.ok());
  CHECK(*configured == shipped());
  test::TempDir empty;
  Result<std::filesystem::path> bad = find_prompt_dir(empty.path());
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.status().message(), "(configured) has no designer.md"));

  setenv("KFORGE_PROMPT_DIR", shipped().c_str(), 1);
  Result<std::filesystem::path> env = find_prompt_dir("");
  unsetenv("KFORGE_PROMPT_DIR");
  REQUIRE(env.ok());
  CHECK(*env == shipped());
}

// --- extract_code ---------------------------------------------------------------------------

TEST_CASE("extract_code: a clean fenced block") {
  Result<std::string> code =
      extract_code(std::string("```python\n") + kModelNew + "```\n", "triton");
  REQUIRE(code.ok());
  CHECK(*code == kModelNew);
}

TEST_CASE("extract_code: prose and two blocks give the last block that defines ModelNew") {
  std::string draft = "```python\nclass ModelNew:\n    pass  # draft\n```\n";
  std::string final_code = std::string("```py\n") + kModelNew + "```\n";
  std::string usage = "```python\nm = ModelNew()\nprint(m(x))\n```\n";
  Result<std::string> code =
      extract_code("Here is a first try:\n" + draft + "Better:\n" + final_code +
                       "Use it like this:\n" + usage + "Good luck!",
                   "triton");
  REQUIRE(code.ok());
  CHECK(*code == kModelNew);
}

TEST_CASE("extract_code: a missing closing fence keeps the code to the end") {
  Result<std::string> code = extract_code(std::string("Sure.\n```python3\n") + kModelNew, "cpp");
  REQUIRE(code.ok());
  CHECK(*code == kModelNew);
}

TEST_CASE("extract_code: CRLF line ends and a fence glued to the last line") {
  Result<std::string> code = extract_code(
      "```Python\r\nclass ModelNew:\r\n    def forward(self, x):\r\n        return x```\r\nok",
      "cpp");
  REQUIRE(code.ok());
  CHECK(*code == "class ModelNew:\n    def forward(self, x):\n        return x\n");
}

TEST_CASE("extract_code: no code at all is an error that says what was expected") {
  for (const char* answer : {"", "   \n", "I cannot do that.", "<think>hmm, long thoughts",
                             "```python\nprint('hello')\n```"}) {
    Result<std::string> code = extract_code(answer, "triton");
    REQUIRE_FALSE(code.ok());
    CHECK(code.status().code() == Code::invalid_argument);
    CHECK(contains(code.status().message(), "```python fenced block"));
    CHECK(contains(code.status().message(), "class ModelNew"));
  }
  CHECK(contains(extract_code("<think>x", "cpp").status().message(), "reasoning"));
  CHECK(contains(extract_code("```cpp\nint f();\n```", "cpp").status().message(), "(cpp)"));
}

TEST_CASE("extract_code: untagged blocks, unfenced answers and the function form") {
  Result<std::string> untagged = extract_code(std::string("```\n") + kModelNew + "```", "cpp");
  REQUIRE(untagged.ok());
  CHECK(*untagged == kModelNew);

  Result<std::string> bare = extract_code(std::string("Here it is:\n") + kModelNew, "cpp");
  REQUIRE(bare.ok());
  CHECK(*bare == kModelNew);

  std::string fn = "import torch\n\ndef softmax_triton_torch(x):\n    return x\n";
  Result<std::string> form = extract_code("```python\n" + fn + "```", "triton");
  REQUIRE(form.ok());
  CHECK(*form == fn);
  CHECK_FALSE(extract_code("```python\n" + fn + "```", "cpp").ok());  // wrong impl_type

  Result<std::string> thought =
      extract_code(std::string("<think>```python\nclass ModelNew: draft\n```</think>```python\n") +
                       kModelNew + "```",
                   "cpp");
  REQUIRE(thought.ok());
  CHECK(*thought == kModelNew);

  Result<std::string> headless = extract_code(
      std::string("so:\n```python\nclass ModelNew: draft\n```\n</think>\n") + kModelNew, "cpp");
  REQUIRE(headless.ok());
  CHECK(*headless == kModelNew);
}

// --- extract_design -------------------------------------------------------------------------

TEST_CASE("extract_design: the aul block, else the whole answer") {
  Result<std::string> d =
      extract_design("Strategy: one row per program.\n```aul\nkernel k():\n    pass\n```\n");
  REQUIRE(d.ok());
  CHECK(*d == "kernel k():\n    pass\n");
  Result<std::string> whole = extract_design("\n  grid (M,) as (row,)\n\n");
  REQUIRE(whole.ok());
  CHECK(*whole == "grid (M,) as (row,)\n");
  Result<std::string> empty = extract_design(" \r\n ");
  REQUIRE_FALSE(empty.ok());
  CHECK(contains(empty.status().message(), "```aul"));
}

// --- parse_conductor ------------------------------------------------------------------------

TEST_CASE("parse_conductor: fenced JSON") {
  Result<ConductorDecision> d = parse_conductor(
      "```json\n{\"action\": \"fix_code\", \"suggestions\": \"mask the tail {not json}\"}\n```");
  REQUIRE_MESSAGE(d.ok(), d.status().to_string());
  CHECK(d->action == "fix_code");
  CHECK(d->suggestions == "mask the tail {not json}");
}

TEST_CASE("parse_conductor: JSON inside prose, after a brace that is not JSON") {
  Result<ConductorDecision> d = parse_conductor(
      "The kernel writes out[{i}] past the end. Decision:\n"
      "{\"action\": \" Fix_Design \", \"suggestions\": [\"tile rows\", \"use f32\"]} thanks");
  REQUIRE_MESSAGE(d.ok(), d.status().to_string());
  CHECK(d->action == "fix_design");
  CHECK(d->suggestions == "tile rows\nuse f32");

  Result<ConductorDecision> nested = parse_conductor("{\"decision\": {\"action\": \"finish\"}}");
  REQUIRE(nested.ok());
  CHECK(nested->action == "finish");
  CHECK(nested->suggestions.empty());
}

TEST_CASE("parse_conductor: a bad action or no JSON is an error") {
  Result<ConductorDecision> bad = parse_conductor("{\"action\": \"retry\", \"suggestions\": \"\"}");
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.status().message(), "\"retry\" is not one of fix_code, fix_design, finish"));
  Result<ConductorDecision> none = parse_conductor("fix the code please {broken");
  REQUIRE_FALSE(none.ok());
  CHECK(contains(none.status().message(), "expected a JSON object"));
  CHECK_FALSE(parse_conductor("{\"action\": 3}").ok());
  CHECK_FALSE(parse_conductor("").ok());
}

TEST_CASE("the parsers survive garbage") {
  // Deterministic soup of the tokens the parsers care about; success must carry content.
  const std::vector<std::string> tokens = {"```",
                                           "```python\n",
                                           "~~~",
                                           "{",
                                           "}",
                                           "\"",
                                           "\\",
                                           "\r",
                                           "\n",
                                           "class ModelNew:",
                                           "<think>",
                                           "</think>",
                                           "\"action\": \"finish\"",
                                           "```aul\n",
                                           " ",
                                           "x"};
  uint64_t state = 42;
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    const int n = round % 60;
    for (int i = 0; i < n; ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      text += tokens[(state >> 33) % tokens.size()];
    }
    Result<std::string> code = extract_code(text, "cpp");
    if (code.ok()) CHECK(code->find("ModelNew") != std::string::npos);
    Result<std::string> design = extract_design(text);
    if (design.ok()) CHECK_FALSE(design->empty());
    Result<ConductorDecision> decision = parse_conductor(text);
    if (decision.ok()) CHECK(decision->action == "finish");
  }
}
