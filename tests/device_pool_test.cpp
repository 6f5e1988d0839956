#include "coordinator/scheduling/device_pool.h"

#include <doctest/doctest.h>

using namespace kforge;

namespace {

std::vector<PoolDevice> cpus(uint32_t n, const std::string& arch = "x86_64") {
  std::vector<PoolDevice> out;
  for (uint32_t i = 0; i < n; ++i) out.push_back({"cpu", i, arch});
  return out;
}

PoolJob job(int64_t id, int priority = 0, bool exclusive = false, std::string backend = "cpu",
            std::string arch = "") {
  return PoolJob{id, std::move(backend), std::move(arch), priority, exclusive};
}

std::vector<int64_t> ids(const std::vector<Placement>& ps) {
  std::vector<int64_t> out;
  for (const auto& p : ps) out.push_back(p.job_id);
  return out;
}

}  // namespace

TEST_CASE("one job per device by default") {
  DevicePool pool;
  pool.add_agent("a", cpus(2), false);
  for (int64_t i = 1; i <= 5; ++i) pool.enqueue(job(i));
  auto placed = pool.place();
  CHECK(placed.size() == 2);
  CHECK(pool.place().empty());
  CHECK(pool.queued() == 3);
  CHECK(pool.release(placed[0].job_id));
  auto next = pool.place();
  REQUIRE(next.size() == 1);
  CHECK(next[0].device_index == placed[0].device_index);
}

TEST_CASE("priority first, then first in first out") {
  DevicePool pool;
  for (int64_t i = 1; i <= 4; ++i) pool.enqueue(job(i));
  pool.enqueue(job(10, 5));
  pool.enqueue(job(11, 5));
  pool.add_agent("a", cpus(1), false);
  std::vector<int64_t> order;
  for (int i = 0; i < 6; ++i) {
    auto p = pool.place();
    REQUIRE(p.size() == 1);
    order.push_back(p[0].job_id);
    pool.release(p[0].job_id);
  }
  CHECK(order == std::vector<int64_t>{10, 11, 1, 2, 3, 4});
}

TEST_CASE("jobs go only to devices of their backend and arch") {
  DevicePool pool;
  pool.add_agent("gpu-host", {{"cuda", 0, "h100"}, {"cuda", 1, "a100"}}, false);
  pool.add_agent("cpu-host", cpus(1), false);
  pool.enqueue(job(1, 0, false, "cuda", "a100"));
  pool.enqueue(job(2, 0, false, "ascend", "ascend910b4"));
  pool.enqueue(job(3, 0, false, "cuda", ""));
  auto placed = pool.place();
  REQUIRE(placed.size() == 2);
  for (const auto& p : placed) {
    CHECK(p.agent_id == "gpu-host");
    if (p.job_id == 1) CHECK(p.device_index == 1);
    if (p.job_id == 3) CHECK(p.device_index == 0);
  }
  CHECK(pool.queued() == 1);  // nothing runs ascend here
}

TEST_CASE("shared slots let precision jobs share a device, never with an exclusive one") {
  DevicePool pool(3);
  pool.add_agent("a", cpus(1), false);
  pool.enqueue(job(1));
  pool.enqueue(job(2));
  pool.enqueue(job(3, 0, true));  // profile job
  pool.enqueue(job(4));
  auto placed = pool.place();
  CHECK(ids(placed) == std::vector<int64_t>{1, 2, 4});  // the exclusive job waits
  pool.release(1);
  pool.release(2);
  CHECK(pool.place().empty());  // job 4 still runs
  pool.release(4);
  auto excl = pool.place();
  CHECK(ids(excl) == std::vector<int64_t>{3});
  pool.enqueue(job(5));
  CHECK(pool.place().empty());  // nothing joins an exclusive job
  pool.release(3);
  CHECK(ids(pool.place()) == std::vector<int64_t>{5});
}

TEST_CASE("a drained agent gets nothing new; undrained it does") {
  DevicePool pool;
  pool.add_agent("a", cpus(1), true);
  pool.enqueue(job(1));
  CHECK(pool.place().empty());
  pool.set_drained("a", false);
  CHECK(pool.place().size() == 1);
}

TEST_CASE("removing an agent returns the jobs it ran") {
  DevicePool pool;
  pool.add_agent("a", cpus(2), false);
  pool.add_agent("b", cpus(1), false);
  for (int64_t i = 1; i <= 3; ++i) pool.enqueue(job(i));
  auto placed = pool.place();
  REQUIRE(placed.size() == 3);
  auto lost = pool.remove_agent("a");
  CHECK(lost.size() == 2);
  CHECK_FALSE(pool.has_agent("a"));
  CHECK(pool.running() == 1);
  for (int64_t id : lost) CHECK(pool.placement_of(id) == nullptr);
}

TEST_CASE("a withdrawn job is never placed") {
  DevicePool pool;
  pool.enqueue(job(1));
  pool.enqueue(job(2));
  CHECK(pool.dequeue(1));
  CHECK_FALSE(pool.dequeue(1));
  pool.add_agent("a", cpus(2), false);
  CHECK(ids(pool.place()) == std::vector<int64_t>{2});
}
