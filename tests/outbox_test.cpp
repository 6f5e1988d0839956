// The agent's outbox (agent/outbox.h): results kept on disk until acknowledged, across
// restarts, on a real SQLite file.
#include "agent/outbox.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "tests/support/support.h"

using namespace kforge;
using test::TempDir;

namespace {

proto::JobResult result(uint64_t job, uint64_t epoch, const std::string& out = "out") {
  proto::JobResult r = test::output_result(out);
  r.job = {job, epoch};
  r.agent_id = "a1";
  r.stderr_data = "err";
  r.verify = verify_failure(Verdict::timeout, "ran out of time", "trials");
  r.started_ms = 1000;
  r.finished_ms = 2000;
  return r;
}

std::unique_ptr<Outbox> open(const std::filesystem::path& path) {
  auto box = Outbox::open(path);
  REQUIRE_MESSAGE(box.ok(), box.status().to_string());
  return std::move(box.value());
}

}  // namespace

TEST_CASE("results survive a restart, whole and oldest first, until removed") {
  TempDir dir;
  {
    auto box = open(dir / "outbox.db");
    REQUIRE(box->put(result(7, 1)).ok());
    REQUIRE(box->put(result(3, 2)).ok());
    CHECK(box->size() == 2);
  }
  auto box = open(dir / "outbox.db");
  CHECK(box->refs() == std::vector<proto::JobRef>{{7, 1}, {3, 2}});
  auto all = box->all();
  REQUIRE(all.ok());
  REQUIRE(all->size() == 2);
  CHECK((*all)[0] == result(7, 1));  // every field, the typed verdict included
  CHECK((*all)[1] == result(3, 2));
  REQUIRE(box->remove({7, 1}).ok());
  CHECK_FALSE(box->contains({7, 1}));
  box.reset();
  CHECK(open(dir / "outbox.db")->refs() == std::vector<proto::JobRef>{{3, 2}});
}

TEST_CASE("an attempt is kept once: storing it again replaces it") {
  TempDir dir;
  auto box = open(dir / "outbox.db");
  REQUIRE(box->put(result(5, 1, "first")).ok());
  REQUIRE(box->put(result(5, 1, "second")).ok());
  CHECK(box->size() == 1);
  auto all = box->all();
  REQUIRE(all.ok());
  REQUIRE(all->size() == 1);
  CHECK((*all)[0].stdout_data == "second");
}

TEST_CASE("removing is by attempt: another epoch of the job stays, an unknown one is no error") {
  TempDir dir;
  auto box = open(dir / "outbox.db");
  REQUIRE(box->put(result(5, 1)).ok());
  REQUIRE(box->put(result(5, 2)).ok());
  REQUIRE(box->remove({5, 1}).ok());
  CHECK(box->refs() == std::vector<proto::JobRef>{{5, 2}});
  CHECK(box->remove({99, 1}).ok());
  CHECK(box->size() == 1);
}

TEST_CASE("the outbox file is private to the agent's user") {
  TempDir dir;
  auto box = open(dir / "outbox.db");
  REQUIRE(box->put(result(1, 1)).ok());
  struct stat st {};
  REQUIRE(::stat((dir / "outbox.db").c_str(), &st) == 0);
  CHECK((st.st_mode & 077) == 0);
}

TEST_CASE("a stored result that does not decode is an error naming the outbox") {
  TempDir dir;
  REQUIRE(open(dir / "outbox.db")->put(result(1, 1)).ok());
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir / "outbox.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "UPDATE outbox SET data = x'c1c1c1'", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  sqlite3_close(db);
  auto box = open(dir / "outbox.db");
  CHECK(box->refs() == std::vector<proto::JobRef>{{1, 1}});
  auto all = box->all();
  REQUIRE_FALSE(all.ok());
  CHECK(all.status().message().rfind("outbox: ", 0) == 0);
}

TEST_CASE("an outbox that cannot be created is an error naming its path") {
  TempDir dir;
  test::write_file(dir / "file", "not a directory");
  auto box = Outbox::open(dir / "file" / "outbox.db");
  REQUIRE_FALSE(box.ok());
  CHECK(box.status().message().find((dir / "file" / "outbox.db").string()) != std::string::npos);
}
