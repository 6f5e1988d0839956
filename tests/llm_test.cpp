// The LLM client against a fake OpenAI-compatible server: answers, retries, limits, replay.
#include "coordinator/generation/llm.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <future>
#include <string>

#include "common/config.h"
#include "common/sha256.h"
#include "coordinator/generation/conductor.h"
#include "tests/support/fake_llm.h"
#include "tests/support/support.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;

namespace {

// Fast retries so a test pays milliseconds, not seconds, per backoff.
LlmClientOptions fast_options() {
  LlmClientOptions o;
  o.backoff_base_ms = 10;
  o.backoff_max_ms = 50;
  return o;
}

LlmEndpoint endpoint_for(const FakeLlmServer& server) {
  LlmEndpoint ep;
  ep.base_url = server.base_url();
  ep.model = "fake-coder";
  ep.timeout_s = 10;
  ep.max_retries = 3;
  return ep;
}

std::unique_ptr<LlmClient> make_client(std::map<LlmRole, LlmEndpoint> by_role,
                                       LlmClientOptions options = fast_options()) {
  auto client = LlmClient::create(std::move(by_role), options);
  REQUIRE_MESSAGE(client.ok(), client.status().to_string());
  return std::move(client).value();
}

LlmRequest ask(std::string question, LlmRole role = LlmRole::coder, std::string replay_key = "") {
  LlmRequest r;
  r.role = role;
  r.messages = {{"system", "You write Triton kernels."}, {"user", std::move(question)}};
  r.replay_key = std::move(replay_key);
  return r;
}

std::future<LlmResponse> submit(LlmClient& client, LlmRequest request) {
  auto promise = std::make_shared<std::promise<LlmResponse>>();
  auto future = promise->get_future();
  client.submit(std::move(request), [promise](LlmResponse r) { promise->set_value(std::move(r)); });
  return future;
}

// Submits and waits for the answer (a generous deadline; the answer normally takes ms).
LlmResponse call(LlmClient& client, LlmRequest request) {
  auto future = submit(client, std::move(request));
  REQUIRE(future.wait_for(20s) == std::future_status::ready);
  return future.get();
}

int64_t prompt_bytes(const LlmRequest& r) {
  int64_t n = 0;
  for (const auto& m : r.messages) n += static_cast<int64_t>(m.content.size());
  return n;
}

}  // namespace

TEST_CASE("sha256 standard vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1'000'000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 padding boundaries and incremental updates") {
  // Lengths around the 56- and 64-byte padding edges (digests from coreutils sha256sum).
  CHECK(sha256_hex(std::string(55, 'x')) ==
        "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
  CHECK(sha256_hex(std::string(56, 'x')) ==
        "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e");
  CHECK(sha256_hex(std::string(63, 'x')) ==
        "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2");
  CHECK(sha256_hex(std::string(64, 'x')) ==
        "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c");
  CHECK(sha256_hex(std::string(65, 'x')) ==
        "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9");
  CHECK(sha256_hex(std::string(120, 'x')) ==
        "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98");
  std::string text(1000, 'x');
  Sha256 h;
  for (size_t i = 0; i < text.size(); i += 7) h.update(std::string_view(text).substr(i, 7));
  CHECK(h.hex_digest() == "44f8354494a5ba03ba1792a8d3e9c534c47a9181980fde7a3f44b06ef2ae7c7f");
}

TEST_CASE("ok response carries content, reasoning, tokens and cost") {
  FakeLlmServer server;
  server.push(FakeBehaviour::ok("def kernel(): pass", "think first"));
  LlmEndpoint ep = endpoint_for(server);
  ep.price_prompt_per_mtok = 2.0;
  ep.price_completion_per_mtok = 8.0;
  ep.temperature = 0.7;
  ep.max_tokens = 1234;
  auto client = make_client({{LlmRole::coder, ep}});
  LlmRequest req = ask("write softmax");
  LlmResponse r = call(*client, req);
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.content == "def kernel(): pass");
  CHECK(r.reasoning == "think first");
  CHECK(r.prompt_tokens == prompt_bytes(req));
  CHECK(r.completion_tokens == 18);
  CHECK(r.cost_usd == doctest::Approx((prompt_bytes(req) * 2.0 + 18 * 8.0) / 1e6));
  CHECK(r.attempts == 1);
  CHECK(r.http_status == 200);
  CHECK(r.model == "fake-coder");
  CHECK(r.request_key == request_key(ep, req));
  CHECK(client->in_flight() == 0);

  auto sent = server.requests();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].method == "POST");
  CHECK(sent[0].path == "/v1/chat/completions");
  CHECK(sent[0].body["model"] == "fake-coder");
  CHECK(sent[0].body["temperature"] == 0.7);
  CHECK(sent[0].body["max_tokens"] == 1234);
  CHECK(sent[0].body["messages"][1]["role"] == "user");
  CHECK(sent[0].body["messages"][1]["content"] == "write softmax");
  CHECK(sent[0].headers.count("authorization") == 0);
}

TEST_CASE("the api key goes in a bearer header") {
  FakeLlmServer server;
  ::setenv("KFORGE_LLM_TEST_KEY", "sk-test-123", 1);
  LlmEndpoint ep = endpoint_for(server);
  ep.api_key_env = "KFORGE_LLM_TEST_KEY";
  auto client = make_client({{LlmRole::coder, ep}});
  LlmResponse r = call(*client, ask("hi"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.content == "echo: hi");
  CHECK(server.requests().at(0).headers.at("authorization") == "Bearer sk-test-123");

  ep.api_key_env = "KFORGE_LLM_TEST_KEY_UNSET";
  auto missing = LlmClient::create({{LlmRole::coder, ep}});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("KFORGE_LLM_TEST_KEY_UNSET") != std::string::npos);
}

TEST_CASE("the api key can come from a private file instead of the environment") {
  FakeLlmServer server;
  TempDir dir;
  write_file(dir / "deepseek.key", "  sk-file-456\n");
  ::chmod((dir / "deepseek.key").c_str(), 0600);
  LlmEndpoint ep = endpoint_for(server);
  ep.api_key_file = (dir / "deepseek.key").string();
  auto client = make_client({{LlmRole::coder, ep}});
  LlmResponse r = call(*client, ask("hi"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(server.requests().at(0).headers.at("authorization") == "Bearer sk-file-456");

  // Others could read it: refused, naming the file and the mode.
  ::chmod((dir / "deepseek.key").c_str(), 0644);
  auto open = LlmClient::create({{LlmRole::coder, ep}});
  REQUIRE_FALSE(open.ok());
  CHECK(open.status().message().find("deepseek.key") != std::string::npos);
  CHECK(open.status().message().find("0644") != std::string::npos);
  // Both sources at once: which one would win is not for a reader to guess.
  ::chmod((dir / "deepseek.key").c_str(), 0600);
  ep.api_key_env = "KFORGE_LLM_TEST_KEY";
  auto both = LlmClient::create({{LlmRole::coder, ep}});
  REQUIRE_FALSE(both.ok());
  CHECK(both.status().message().find("not both") != std::string::npos);
  ep.api_key_env.clear();
  ep.api_key_file = (dir / "missing.key").string();
  auto missing = LlmClient::create({{LlmRole::coder, ep}});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("missing.key does not exist") != std::string::npos);
}

TEST_CASE("OPENAI_BASE_URL and OPENAI_API_KEY fill what a role leaves out; the config wins") {
  FakeLlmServer server, configured;
  struct Unset {  // also when a check below fails: the later tests run without them
    ~Unset() {
      ::unsetenv("OPENAI_BASE_URL");
      ::unsetenv("OPENAI_API_KEY");
    }
  } unset;
  ::setenv("OPENAI_BASE_URL", server.base_url().c_str(), 1);
  ::setenv("OPENAI_API_KEY", "sk-openai-env", 1);
  ::setenv("KFORGE_LLM_TEST_KEY", "sk-from-config", 1);
  Config whole;
  LlmConfig& config = whole.llm;
  config.coder.provider = "openai";
  config.coder.model = "fake-coder";
  auto endpoints = conductor_options(whole, ".").endpoints;
  CHECK(endpoints.at(LlmRole::coder).base_url == server.base_url());
  CHECK(endpoints.at(LlmRole::coder).api_key_env ==
        "OPENAI_API_KEY");  // the variable's name, not the key
  LlmResponse r = call(*make_client(endpoints), ask("hi"));
  REQUIRE_MESSAGE(r.ok, r.error);
  REQUIRE(server.requests().size() == 1);
  CHECK(server.requests().at(0).headers.at("authorization") == "Bearer sk-openai-env");

  // What the config sets is used, whatever the environment says.
  config.coder.base_url = configured.base_url();
  config.coder.api_key_env = "KFORGE_LLM_TEST_KEY";
  endpoints = conductor_options(whole, ".").endpoints;
  r = call(*make_client(endpoints), ask("hi"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(server.requests().size() == 1);
  REQUIRE(configured.requests().size() == 1);
  CHECK(configured.requests().at(0).headers.at("authorization") == "Bearer sk-from-config");
  // A replayed role asks no server and sends no key.
  config.coder = {};
  config.coder.provider = "replay";
  config.coder.recording = "r.jsonl";
  CHECK(conductor_options(whole, ".").endpoints.at(LlmRole::coder).api_key_env.empty());
}

TEST_CASE("empty content is an ok answer, not an error") {
  FakeLlmServer server;
  server.push(FakeBehaviour::ok("  \n"));
  auto client = make_client({{LlmRole::coder, endpoint_for(server)}});
  LlmResponse r = call(*client, ask("anything"));
  CHECK(r.ok);
  CHECK(r.content == "  \n");
  CHECK(r.error.empty());
}

TEST_CASE("429 with Retry-After is retried after the server's delay") {
  FakeLlmServer server;
  server.push(FakeBehaviour::status(429, 1, "rate limited"));
  auto client = make_client({{LlmRole::coder, endpoint_for(server)}});
  LlmResponse r = call(*client, ask("q"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.attempts == 2);
  CHECK(r.content == "echo: q");
  auto sent = server.requests();
  REQUIRE(sent.size() == 2);
  // The backoff base is 10 ms, so only Retry-After explains a wait of about a second.
  CHECK(sent[1].received - sent[0].received >= 900ms);
}

TEST_CASE("500 then ok") {
  FakeLlmServer server;
  server.push(FakeBehaviour::status(500));
  auto client = make_client({{LlmRole::coder, endpoint_for(server)}});
  LlmResponse r = call(*client, ask("q"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.attempts == 2);
  CHECK(server.request_count() == 2);
}

TEST_CASE("malformed JSON then ok") {
  FakeLlmServer server;
  server.push(FakeBehaviour::malformed_json());
  auto client = make_client({{LlmRole::coder, endpoint_for(server)}});
  LlmResponse r = call(*client, ask("q"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.attempts == 2);
  CHECK(r.content == "echo: q");
}

TEST_CASE("truncated body then ok") {
  FakeLlmServer server;
  server.push(FakeBehaviour::truncated_body());
  auto client = make_client({{LlmRole::coder, endpoint_for(server)}});
  LlmResponse r = call(*client, ask("q"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.attempts == 2);
}

TEST_CASE("a response slower than the timeout is retried") {
  FakeLlmServer server;
  server.push(FakeBehaviour::slow(3000));
  LlmEndpoint ep = endpoint_for(server);
  ep.timeout_s = 1;
  auto client = make_client({{LlmRole::coder, ep}});
  LlmResponse r = call(*client, ask("q"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.attempts == 2);
  CHECK(server.request_count() == 2);
}

TEST_CASE("400 is not retried and names the server's message") {
  FakeLlmServer server;
  server.push(FakeBehaviour::status(400, -1, "max_tokens is too large for this model"));
  auto client = make_client({{LlmRole::coder, endpoint_for(server)}});
  LlmResponse r = call(*client, ask("q"));
  CHECK_FALSE(r.ok);
  CHECK(r.attempts == 1);
  CHECK(r.http_status == 400);
  CHECK(r.error.find("400") != std::string::npos);
  CHECK(r.error.find("max_tokens is too large for this model") != std::string::npos);
  CHECK(r.content.empty());
  CHECK(server.request_count() == 1);
}

TEST_CASE("retries exhausted give the last error") {
  FakeLlmServer server;
  server.push(FakeBehaviour::status(503, -1, "first"));
  server.push(FakeBehaviour::status(502, -1, "second"));
  server.push(FakeBehaviour::status(500, -1, "overloaded, last"));
  server.push(FakeBehaviour::ok("never asked"));
  LlmEndpoint ep = endpoint_for(server);
  ep.max_retries = 2;
  auto client = make_client({{LlmRole::coder, ep}});
  LlmResponse r = call(*client, ask("q"));
  CHECK_FALSE(r.ok);
  CHECK(r.attempts == 3);
  CHECK(r.http_status == 500);
  CHECK(r.error.find("overloaded, last") != std::string::npos);
  CHECK(r.error.find("3 attempts") != std::string::npos);
  CHECK(server.request_count() == 3);
}

TEST_CASE("connection refused is retried, then reported") {
  std::string dead_url;
  {
    FakeLlmServer gone;  // a port that was ours a moment ago and is closed now
    dead_url = gone.base_url();
  }
  LlmEndpoint ep;
  ep.base_url = dead_url;
  ep.model = "m";
  ep.max_retries = 1;
  auto client = make_client({{LlmRole::coder, ep}});
  LlmResponse r = call(*client, ask("q"));
  CHECK_FALSE(r.ok);
  CHECK(r.attempts == 2);
  CHECK(r.error.find(dead_url) != std::string::npos);
}

TEST_CASE("the concurrency limit holds, shared by endpoints of one model") {
  FakeLlmServer server;
  for (int i = 0; i < 6; ++i) server.push(FakeBehaviour::slow(200));
  LlmEndpoint coder = endpoint_for(server);
  coder.concurrency = 2;
  LlmEndpoint designer = coder;  // same base_url + model: one limit for both roles
  designer.concurrency = 3;
  auto client = make_client({{LlmRole::coder, coder}, {LlmRole::designer, designer}});
  std::vector<std::future<LlmResponse>> futures;
  for (int i = 0; i < 6; ++i) {
    futures.push_back(
        submit(*client, ask("q" + std::to_string(i), i % 2 ? LlmRole::designer : LlmRole::coder)));
  }
  CHECK(client->in_flight() > 0);
  for (auto& f : futures) {
    REQUIRE(f.wait_for(20s) == std::future_status::ready);
    LlmResponse r = f.get();
    CHECK_MESSAGE(r.ok, r.error);
    CHECK(r.attempts == 1);
  }
  CHECK(server.request_count() == 6);
  CHECK(server.max_concurrent() == 2);
  CHECK(client->in_flight() == 0);
}

TEST_CASE("waiting requests start in submission order") {
  FakeLlmServer server;
  server.push(FakeBehaviour::slow(100));
  LlmEndpoint ep = endpoint_for(server);
  ep.concurrency = 1;
  auto client = make_client({{LlmRole::coder, ep}});
  std::vector<std::future<LlmResponse>> futures;
  for (int i = 0; i < 5; ++i) futures.push_back(submit(*client, ask("q" + std::to_string(i))));
  for (auto& f : futures) REQUIRE(f.wait_for(20s) == std::future_status::ready);
  auto sent = server.requests();
  REQUIRE(sent.size() == 5);
  for (int i = 0; i < 5; ++i)
    CHECK(sent[i].body["messages"][1]["content"] == "q" + std::to_string(i));
}

TEST_CASE("a role without an endpoint fails without a request") {
  FakeLlmServer server;
  LlmEndpoint ep = endpoint_for(server);
  auto client = make_client({{LlmRole::coder, ep}, {LlmRole::designer, ep}});
  LlmResponse r = call(*client, ask("q", LlmRole::conductor));
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("'conductor'") != std::string::npos);
  CHECK(r.error.find("designer, coder") != std::string::npos);
  CHECK(server.request_count() == 0);
}

TEST_CASE("request_key is stable and covers model, messages and temperature") {
  LlmEndpoint ep;
  ep.base_url = "http://127.0.0.1:8000/v1";
  ep.model = "deepseek-chat";
  LlmRequest req = ask("write softmax");
  std::string key = request_key(ep, req);
  CHECK(key.size() == 64);
  CHECK(request_key(ep, ask("write softmax")) == key);

  LlmEndpoint other_role_same_model = ep;
  other_role_same_model.concurrency = 9;
  other_role_same_model.price_prompt_per_mtok = 3;
  CHECK(request_key(other_role_same_model, ask("write softmax", LlmRole::designer, "k/1")) == key);
  LlmEndpoint slash = ep;
  slash.base_url += "/";
  CHECK(request_key(slash, req) == key);

  LlmEndpoint model = ep;
  model.model = "deepseek-reasoner";
  CHECK(request_key(model, req) != key);
  LlmEndpoint temperature = ep;
  temperature.temperature = 0.3;
  CHECK(request_key(temperature, req) != key);
  LlmEndpoint max_tokens = ep;
  max_tokens.max_tokens = 100;
  CHECK(request_key(max_tokens, req) != key);
  CHECK(request_key(ep, ask("write softmax ")) != key);
  LlmRequest role_swapped = req;
  role_swapped.messages[0].role = "user";
  CHECK(request_key(ep, role_swapped) != key);
  LlmRequest more = req;
  more.messages.push_back({"assistant", ""});
  CHECK(request_key(ep, more) != key);
}

TEST_CASE("replay serves recorded keys and reports missing ones") {
  TempDir dir;
  auto file = dir / "rec.jsonl";
  write_file(
      file,
      "{\"replay_key\":\"softmax/N=1024/coder/1\",\"content\":\"code one\",\"reasoning\":\"r1\","
      "\"prompt_tokens\":11,\"completion_tokens\":7}\n"
      "\n"
      "{\"replay_key\":\"softmax/N=1024/designer/1\",\"content\":\"sketch\"}\n");
  LlmEndpoint ep;
  ep.provider = "replay";
  ep.recording = file.string();
  ep.model = "m";
  ep.price_prompt_per_mtok = 100;
  auto client = make_client({{LlmRole::coder, ep}, {LlmRole::designer, ep}});

  LlmResponse r = call(*client, ask("anything", LlmRole::coder, "softmax/N=1024/coder/1"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.content == "code one");
  CHECK(r.reasoning == "r1");
  CHECK(r.prompt_tokens == 11);
  CHECK(r.completion_tokens == 7);
  CHECK(r.cost_usd == 0);
  CHECK(r.latency_ms == 0);
  CHECK(r.attempts == 0);

  LlmResponse d = call(*client, ask("other", LlmRole::designer, "softmax/N=1024/designer/1"));
  REQUIRE_MESSAGE(d.ok, d.error);
  CHECK(d.content == "sketch");
  CHECK(d.reasoning.empty());

  LlmResponse missing = call(*client, ask("x", LlmRole::coder, "softmax/N=1024/coder/2"));
  CHECK_FALSE(missing.ok);
  CHECK(missing.error == "no recorded response for softmax/N=1024/coder/2 in " + file.string());
}

namespace {

// A client replaying a two-call-wide coder (one recording, keys k0..k4) whose answers take
// 1 s of a ManualClock, and a designer replayed at once. A designer call is the test's
// barrier: the worker delivers every answer due by the clock's time before it admits a
// request submitted after the clock moved, so when the designer's answer is in, so are they.
struct SlowReplay {
  TempDir dir;
  ManualClock clock;
  std::unique_ptr<LlmClient> client;
  std::vector<std::future<LlmResponse>> answers;

  SlowReplay(int concurrency, int64_t latency_ms) {
    std::string lines = "{\"replay_key\":\"probe\",\"content\":\"now\"}\n";
    for (int i = 0; i < 5; ++i) {
      lines += "{\"replay_key\":\"k" + std::to_string(i) + "\",\"content\":\"answer " +
               std::to_string(i) + "\",\"prompt_tokens\":3,\"completion_tokens\":4}\n";
    }
    write_file(dir / "rec.jsonl", lines);
    LlmEndpoint slow;
    slow.provider = "replay";
    slow.recording = (dir / "rec.jsonl").string();
    slow.model = "slow";
    slow.concurrency = concurrency;
    slow.replay_latency_ms = latency_ms;
    slow.price_completion_per_mtok = 100;
    LlmEndpoint instant = slow;
    instant.model = "instant";
    instant.replay_latency_ms = 0;
    auto created = LlmClient::create({{LlmRole::coder, slow}, {LlmRole::designer, instant}},
                                     fast_options(), clock);
    REQUIRE_MESSAGE(created.ok(), created.status().to_string());
    client = std::move(created).value();
  }

  // Moves the clock, waits until the worker has caught up with it, and counts the answers.
  size_t answered_after(Millis by) {
    clock.advance(by);
    LlmResponse probe = call(*client, ask("probe", LlmRole::designer, "probe"));
    REQUIRE_MESSAGE(probe.ok, probe.error);
    CHECK(probe.latency_ms == 0);
    size_t n = 0;
    for (auto& f : answers) n += f.wait_for(0s) == std::future_status::ready ? 1 : 0;
    return n;
  }
};

}  // namespace

TEST_CASE("replay latency holds a concurrency slot and answers when due") {
  SlowReplay r(/*concurrency=*/2, /*latency_ms=*/1000);
  for (int i = 0; i < 5; ++i)
    r.answers.push_back(submit(*r.client, ask("q", LlmRole::coder, "k" + std::to_string(i))));
  CHECK(r.answered_after(0ms) == 0);
  CHECK(r.answered_after(999ms) == 0);
  CHECK(r.answered_after(1ms) == 2);  // t = 1000: k0, k1; k2, k3 take their slots
  CHECK(r.answered_after(999ms) == 2);
  CHECK(r.answered_after(1ms) == 4);  // t = 2000: k2, k3; k4 starts
  CHECK(r.answered_after(999ms) == 4);
  CHECK(r.answered_after(1ms) == 5);  // t = 3000
  for (int i = 0; i < 5; ++i) {
    LlmResponse a = r.answers[i].get();
    REQUIRE_MESSAGE(a.ok, a.error);
    CHECK(a.content == "answer " + std::to_string(i));
    CHECK(a.prompt_tokens == 3);
    CHECK(a.completion_tokens == 4);
    CHECK(a.cost_usd == 0);
    CHECK(a.attempts == 0);
    CHECK(a.latency_ms == 1000);  // from its slot to its answer, not from submission
  }
  CHECK(r.client->in_flight() == 0);
}

TEST_CASE("replay latency: a missing key fails at once, without a slot") {
  SlowReplay r(/*concurrency=*/1, /*latency_ms=*/1000);
  r.answers.push_back(submit(*r.client, ask("q", LlmRole::coder, "k0")));
  LlmResponse missing = call(*r.client, ask("q", LlmRole::coder, "absent"));
  CHECK_FALSE(missing.ok);
  CHECK(missing.error.starts_with("no recorded response for absent in "));
  CHECK(missing.latency_ms == 0);
  r.answers.push_back(submit(*r.client, ask("q", LlmRole::coder, "k1")));
  CHECK(r.answered_after(1000ms) == 1);
  CHECK(r.answered_after(1000ms) == 2);
}

TEST_CASE("replay latency: stopping the client answers the waiting and the delayed") {
  SlowReplay r(/*concurrency=*/1, /*latency_ms=*/1000);
  for (int i = 0; i < 2; ++i)
    r.answers.push_back(submit(*r.client, ask("q", LlmRole::coder, "k" + std::to_string(i))));
  CHECK(r.answered_after(0ms) == 0);
  r.client.reset();
  for (auto& f : r.answers) {
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    LlmResponse a = f.get();
    CHECK_FALSE(a.ok);
    CHECK(a.error == "llm client stopped");
    CHECK(a.content.empty());
  }
}

TEST_CASE("replay_latency_ms is refused with another provider, or negative") {
  LlmEndpoint ep;
  ep.base_url = "http://127.0.0.1:1/v1";
  ep.model = "m";
  ep.replay_latency_ms = 1000;
  auto r = LlmClient::create({{LlmRole::coder, ep}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() ==
        "llm.coder: 'replay_latency_ms' is only valid with provider replay, not openai");
  TempDir dir;
  write_file(dir / "rec.jsonl", "{\"replay_key\":\"a\",\"content\":\"x\"}\n");
  ep.provider = "replay";
  ep.recording = (dir / "rec.jsonl").string();
  ep.replay_latency_ms = -1;
  CHECK_FALSE(LlmClient::create({{LlmRole::coder, ep}}).ok());
  ep.replay_latency_ms = 1000;
  ep.concurrency = 0;
  CHECK_FALSE(LlmClient::create({{LlmRole::coder, ep}}).ok());
}

TEST_CASE("a malformed recording line is refused at creation with file and line") {
  TempDir dir;
  auto file = dir / "bad.jsonl";
  write_file(file, "{\"replay_key\":\"a\",\"content\":\"x\"}\n{\"replay_key\":\"b\"\n");
  LlmEndpoint ep;
  ep.provider = "replay";
  ep.recording = file.string();
  auto client = LlmClient::create({{LlmRole::coder, ep}});
  REQUIRE_FALSE(client.ok());
  CHECK(client.status().message().find(file.string() + ":2:") != std::string::npos);

  write_file(file, "{\"replay_key\":\"a\"}\n");
  auto no_content = LlmClient::create({{LlmRole::coder, ep}});
  REQUIRE_FALSE(no_content.ok());
  CHECK(no_content.status().message().find(":1: missing string 'content'") != std::string::npos);

  ep.recording = (dir / "absent.jsonl").string();
  CHECK_FALSE(LlmClient::create({{LlmRole::coder, ep}}).ok());
}

TEST_CASE("record then replay gives the same answers without the server") {
  TempDir dir;
  auto file = dir / "session.jsonl";
  FakeLlmServer server;
  server.push(FakeBehaviour::ok("first answer", "because"));
  server.push(FakeBehaviour::status(500));  // a retried failure is not recorded
  server.push(FakeBehaviour::ok("second answer \"quoted\"\nnewline"));
  LlmEndpoint rec = endpoint_for(server);
  rec.provider = "record";
  rec.recording = file.string();
  {
    auto client = make_client({{LlmRole::coder, rec}});
    LlmResponse a = call(*client, ask("one", LlmRole::coder, "op/coder/1"));
    REQUIRE_MESSAGE(a.ok, a.error);
    LlmResponse b = call(*client, ask("two", LlmRole::coder, "op/coder/2"));
    REQUIRE_MESSAGE(b.ok, b.error);
    CHECK(b.attempts == 2);
  }
  CHECK(server.request_count() == 3);

  LlmEndpoint rep = rec;
  rep.provider = "replay";
  auto client = make_client({{LlmRole::coder, rep}});
  LlmResponse a = call(*client, ask("one", LlmRole::coder, "op/coder/1"));
  REQUIRE_MESSAGE(a.ok, a.error);
  CHECK(a.content == "first answer");
  CHECK(a.reasoning == "because");
  CHECK(a.prompt_tokens == prompt_bytes(ask("one")));
  LlmResponse b = call(*client, ask("two", LlmRole::coder, "op/coder/2"));
  REQUIRE_MESSAGE(b.ok, b.error);
  CHECK(b.content == "second answer \"quoted\"\nnewline");
  CHECK(server.request_count() == 3);
}

TEST_CASE("without a replay_key the request_key stands in for it") {
  TempDir dir;
  auto file = dir / "session.jsonl";
  FakeLlmServer server;
  LlmEndpoint rec = endpoint_for(server);
  rec.provider = "record";
  rec.recording = file.string();
  {
    auto client = make_client({{LlmRole::coder, rec}});
    REQUIRE(call(*client, ask("keyless")).ok);
  }
  LlmEndpoint rep = rec;
  rep.provider = "replay";
  auto client = make_client({{LlmRole::coder, rep}});
  LlmResponse r = call(*client, ask("keyless"));
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(r.content == "echo: keyless");
  CHECK(server.request_count() == 1);
}

TEST_CASE("bad endpoint configurations are refused at creation") {
  LlmEndpoint ep;
  ep.base_url = "http://127.0.0.1:1/v1";
  ep.model = "m";
  LlmEndpoint bad = ep;
  bad.provider = "anthropic";
  auto r = LlmClient::create({{LlmRole::coder, bad}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("llm.coder") != std::string::npos);
  CHECK(r.status().message().find("anthropic") != std::string::npos);
  bad = ep;
  bad.base_url = "127.0.0.1:8000";
  CHECK_FALSE(LlmClient::create({{LlmRole::coder, bad}}).ok());
  bad = ep;
  bad.model.clear();
  CHECK_FALSE(LlmClient::create({{LlmRole::coder, bad}}).ok());
  bad = ep;
  bad.concurrency = 0;
  CHECK_FALSE(LlmClient::create({{LlmRole::coder, bad}}).ok());
  bad = ep;
  bad.provider = "record";
  CHECK_FALSE(LlmClient::create({{LlmRole::coder, bad}}).ok());  // no recording file named
}

TEST_CASE("destroying the client answers what is still in flight") {
  FakeLlmServer server;
  server.push(FakeBehaviour::slow(10'000));
  LlmEndpoint ep = endpoint_for(server);
  ep.timeout_s = 30;
  auto client = make_client({{LlmRole::coder, ep}});
  auto future = submit(*client, ask("q"));
  REQUIRE(wait_until([&] { return server.request_count() == 1; }));
  auto queued = submit(*client, ask("q2", LlmRole::coder));
  client.reset();
  REQUIRE(future.wait_for(0s) == std::future_status::ready);
  REQUIRE(queued.wait_for(0s) == std::future_status::ready);
  LlmResponse r = future.get();
  CHECK_FALSE(r.ok);
  CHECK(r.error == "llm client stopped");
}

TEST_CASE("a done callback may submit the next request") {
  FakeLlmServer server;
  auto client = make_client({{LlmRole::coder, endpoint_for(server)}});
  std::promise<LlmResponse> second;
  LlmClient* c = client.get();
  c->submit(ask("first"), [&](LlmResponse first) {
    CHECK(first.ok);
    c->submit(ask("second"), [&](LlmResponse r) { second.set_value(std::move(r)); });
  });
  auto f = second.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  CHECK(f.get().content == "echo: second");
}
