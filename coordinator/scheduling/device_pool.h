// DevicePool: every device of every live agent, and the queue of jobs waiting for one.
//
// Pure bookkeeping, no I/O: the Coordinator feeds it agents, jobs and releases, and asks it
// to place queued jobs. A job fits a device when the backends are equal and the job's arch
// is empty or equal to the device's. A device runs one job at a time by default; with
// `shared_slots` > 1 it may run that many non-exclusive (precision-only) jobs together.
// Exclusive (profile) jobs always run alone. Placement order: priority (higher first), then
// FIFO by job id.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace kforge {

struct PoolDevice {
  std::string backend;
  uint32_t index = 0;
  std::string arch;
};

struct PoolJob {
  int64_t id = 0;
  std::string backend;
  std::string arch;  // empty: any arch of the backend
  int priority = 0;
  bool exclusive = false;
};

struct Placement {
  int64_t job_id = 0;
  std::string agent_id;
  std::string backend;
  uint32_t device_index = 0;
};

class DevicePool {
 public:
  explicit DevicePool(uint32_t shared_slots = 1) : shared_slots_(shared_slots ? shared_slots : 1) {}

  // Adds (or replaces) a live agent's devices. Jobs already occupying its devices stay.
  void add_agent(const std::string& agent_id, const std::vector<PoolDevice>& devices, bool drained);
  // Forgets an agent; returns the ids of the jobs that occupied its devices.
  std::vector<int64_t> remove_agent(const std::string& agent_id);
  void set_drained(const std::string& agent_id, bool drained);
  bool has_agent(const std::string& agent_id) const;

  void enqueue(const PoolJob& job);
  bool dequeue(int64_t job_id);  // withdraw a queued job; false if not queued
  size_t queued() const { return queued_.size(); }
  size_t running() const { return running_.size(); }
  size_t devices() const { return devices_.size(); }

  // Marks a job as running on a device (a placement, or a job an agent reported running
  // after a coordinator restart). Returns false if the agent or device is unknown.
  bool occupy(int64_t job_id, const std::string& agent_id, const std::string& backend,
              uint32_t device_index, bool exclusive);
  // Frees the device slot a running job held; false if it was not running.
  bool release(int64_t job_id);
  // Where a running job runs, if it does.
  const Placement* placement_of(int64_t job_id) const;

  // Places as many queued jobs as free devices allow (at most `max`), occupying the devices.
  std::vector<Placement> place(size_t max = SIZE_MAX);

  // Devices and how busy they are, for status displays.
  struct DeviceLoad {
    std::string agent_id;
    PoolDevice device;
    uint32_t running = 0;
    bool exclusive = false;
  };
  std::vector<DeviceLoad> loads() const;

 private:
  struct Device {
    std::string agent_id;
    PoolDevice info;
    uint32_t running = 0;
    bool exclusive = false;  // running an exclusive job
    bool drained = false;
  };
  using DeviceKey = std::tuple<std::string, std::string, uint32_t>;  // agent, backend, index
  using QueueKey = std::pair<std::string, std::string>;              // backend, arch
  using Order = std::pair<int, int64_t>;                             // -priority, id

  bool has_room(const Device& d) const {
    return !d.drained && !d.exclusive && d.running < shared_slots_;
  }
  void update_free(const DeviceKey& key, const Device& d);
  const PoolJob* best_fit(const Device& d) const;

  uint32_t shared_slots_;
  std::map<DeviceKey, Device> devices_;
  std::set<DeviceKey> free_;  // devices that could take another job
  std::unordered_map<int64_t, PoolJob> queued_;
  // Per (backend, arch) and exclusivity, the queued jobs in placement order.
  std::map<QueueKey, std::set<Order>> shared_queue_, exclusive_queue_;
  struct Running {
    Placement where;
    bool exclusive;
  };
  std::unordered_map<int64_t, Running> running_;
};

}  // namespace kforge
