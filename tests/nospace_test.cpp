// Disk full (issue 16, F10): a write the disk refuses degrades the coordinator instead of
// stopping it, and it resumes by itself when space returns. Faults come from the storage
// fault seam (coordinator/store/fault_vfs.h); tests/chaos/disk_full_test.py fills a real
// tmpfs under real processes.
#include <doctest/doctest.h>

#include "coordinator/store/fault_vfs.h"
#include "tests/support/cluster.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;

namespace {

bool alarm_raised(Coordinator& c) {
  return c.storage_alarm().raised;
}

std::filesystem::path reserve_of(TestCluster& cluster) {
  return cluster.dir() / "coordinator" / "kforge.reserve";
}

}  // namespace

TEST_CASE(
    "store: a commit the disk refuses fails with no_space, keeps nothing, and writes work again "
    "with space") {
  StorageFaults& faults = StorageFaults::install();
  TempDir dir;
  auto store = Store::open(dir / "kforge.db");
  REQUIRE_MESSAGE(store.ok(), store.status().to_string());
  Store& s = **store;
  faults.limit_writes(dir.path(), 0);
  REQUIRE(s.begin().ok());
  REQUIRE(s.create_campaign("refused", "{}").ok());  // in the page cache until the commit
  Status st = s.commit();
  CHECK(st.code() == Code::no_space);
  CHECK_FALSE(s.in_batch());
  faults.clear();
  auto none = s.campaigns();
  REQUIRE(none.ok());
  CHECK(none->empty());
  REQUIRE(s.begin().ok());
  REQUIRE(s.create_campaign("kept", "{}").ok());
  REQUIRE(s.commit().ok());
  auto one = s.campaigns();
  REQUIRE(one.ok());
  REQUIRE(one->size() == 1);
  CHECK(one->front().name == "kept");
}

TEST_CASE(
    "disk full mid-run: the alarm is raised instead of stopping; with space back every job is "
    "recorded once") {
  StorageFaults& faults = StorageFaults::install();  // before the cluster opens its store
  TestCluster cluster;
  cluster.start_agent("a", 2);
  REQUIRE(cluster.wait_live(1));
  CHECK(std::filesystem::exists(reserve_of(cluster)));
  std::vector<int64_t> jobs;
  for (int i = 0; i < 40; ++i) jobs.push_back(cluster.submit({"sh", "-c", "sleep 0.05"}));
  uint64_t refused_before = faults.refused_writes();
  faults.limit_writes(cluster.dir(), 0);
  Coordinator& c = cluster.coordinator();
  REQUIRE(wait_until([&] { return alarm_raised(c); }, 30s));
  CHECK(faults.refused_writes() > refused_before);
  CHECK_FALSE(c.stopped());
  CHECK_FALSE(std::filesystem::exists(reserve_of(cluster)));  // given back to the store
  std::string metrics;
  c.render_storage_metrics(metrics);
  CHECK(metrics.find("kforge_nospace_alarm 1\n") != std::string::npos);

  faults.clear();
  REQUIRE(wait_until([&] { return !alarm_raised(c); }, 30s));
  CHECK(std::filesystem::exists(reserve_of(cluster)));
  REQUIRE(cluster.wait_all_done(jobs, 60s));
  auto recorded = cluster.recorded();
  for (int64_t id : jobs) CHECK_MESSAGE(recorded[id] == 1, "job " << id);
  CHECK(c.storage_alarm().raised_total >= 1);
  metrics.clear();
  c.render_storage_metrics(metrics);
  CHECK(metrics.find("kforge_nospace_alarm 0\n") != std::string::npos);
}

TEST_CASE(
    "work posted into a turn that could not commit runs again once space returns, and its caller "
    "gets the answer") {
  StorageFaults& faults = StorageFaults::install();
  TestCluster cluster;
  Coordinator& c = cluster.coordinator();
  faults.limit_writes(cluster.dir(), 0);
  auto answer = c.call_async(
      [](Coordinator& co) { return co.store().create_campaign("posted in the full turn", "{}"); });
  REQUIRE(wait_until([&] { return alarm_raised(c); }, 30s));
  CHECK(answer.wait_for(0s) != std::future_status::ready);  // not answered: it did not commit
  faults.clear();
  REQUIRE(answer.wait_for(30s) == std::future_status::ready);
  auto id = answer.get();
  REQUIRE_MESSAGE(id.ok(), id.status().to_string());
  auto campaigns = c.call([](Coordinator& co) { return co.store().campaigns(); });
  REQUIRE(campaigns.ok());
  REQUIRE(campaigns->size() == 1);  // run twice, committed once
  CHECK(campaigns->front().id == *id);
}

TEST_CASE(
    "a coordinator started on a full disk serves with the alarm raised and recovers when space "
    "returns") {
  StorageFaults& faults = StorageFaults::install();
  TestCluster cluster;
  cluster.start_agent("a");
  REQUIRE(cluster.wait_live(1));
  int64_t first = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({first}, 30s));
  cluster.kill_coordinator();  // the agent stays live in the store: recovery has to write
  faults.limit_writes(cluster.dir(), 0);
  cluster.start_coordinator();
  Coordinator& c = cluster.coordinator();
  CHECK(alarm_raised(c));
  faults.clear();
  REQUIRE(wait_until([&] { return !alarm_raised(c); }, 30s));
  REQUIRE(cluster.wait_live(1));
  int64_t second = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({second}, 30s));
  CHECK(cluster.recorded()[second] == 1);
}
