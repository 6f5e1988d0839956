#include "coordinator/scheduling/device_pool.h"

namespace kforge {

void DevicePool::update_free(const DeviceKey& key, const Device& d) {
  if (has_room(d)) {
    free_.insert(key);
  } else {
    free_.erase(key);
  }
}

void DevicePool::add_agent(const std::string& agent_id, const std::vector<PoolDevice>& devices,
                           bool drained) {
  for (const auto& dev : devices) {
    DeviceKey key{agent_id, dev.backend, dev.index};
    Device& d = devices_[key];
    d.agent_id = agent_id;
    d.info = dev;
    d.drained = drained;
    update_free(key, d);
  }
}

std::vector<int64_t> DevicePool::remove_agent(const std::string& agent_id) {
  std::vector<int64_t> jobs;
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->second.where.agent_id == agent_id) {
      jobs.push_back(it->first);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = devices_.lower_bound(DeviceKey{agent_id, "", 0});
       it != devices_.end() && std::get<0>(it->first) == agent_id;) {
    free_.erase(it->first);
    it = devices_.erase(it);
  }
  return jobs;
}

void DevicePool::set_drained(const std::string& agent_id, bool drained) {
  for (auto it = devices_.lower_bound(DeviceKey{agent_id, "", 0});
       it != devices_.end() && std::get<0>(it->first) == agent_id; ++it) {
    it->second.drained = drained;
    update_free(it->first, it->second);
  }
}

bool DevicePool::has_agent(const std::string& agent_id) const {
  auto it = devices_.lower_bound(DeviceKey{agent_id, "", 0});
  return it != devices_.end() && std::get<0>(it->first) == agent_id;
}

void DevicePool::enqueue(const PoolJob& job) {
  if (queued_.count(job.id) || running_.count(job.id)) return;
  queued_[job.id] = job;
  auto& queue = job.exclusive ? exclusive_queue_ : shared_queue_;
  queue[{job.backend, job.arch}].insert({-job.priority, job.id});
}

bool DevicePool::dequeue(int64_t job_id) {
  auto it = queued_.find(job_id);
  if (it == queued_.end()) return false;
  const PoolJob& job = it->second;
  auto& queue = job.exclusive ? exclusive_queue_ : shared_queue_;
  auto q = queue.find({job.backend, job.arch});
  if (q != queue.end()) {
    q->second.erase({-job.priority, job.id});
    if (q->second.empty()) queue.erase(q);
  }
  queued_.erase(it);
  return true;
}

bool DevicePool::occupy(int64_t job_id, const std::string& agent_id, const std::string& backend,
                        uint32_t device_index, bool exclusive) {
  DeviceKey key{agent_id, backend, device_index};
  auto it = devices_.find(key);
  if (it == devices_.end()) return false;
  dequeue(job_id);
  if (running_.count(job_id)) release(job_id);
  Device& d = it->second;
  d.running++;
  if (exclusive) d.exclusive = true;
  running_[job_id] = Running{Placement{job_id, agent_id, backend, device_index}, exclusive};
  update_free(key, d);
  return true;
}

bool DevicePool::release(int64_t job_id) {
  auto it = running_.find(job_id);
  if (it == running_.end()) return false;
  const Placement& p = it->second.where;
  DeviceKey key{p.agent_id, p.backend, p.device_index};
  auto dev = devices_.find(key);
  if (dev != devices_.end()) {
    Device& d = dev->second;
    if (d.running > 0) d.running--;
    if (it->second.exclusive) d.exclusive = false;
    update_free(key, d);
  }
  running_.erase(it);
  return true;
}

const Placement* DevicePool::placement_of(int64_t job_id) const {
  auto it = running_.find(job_id);
  return it == running_.end() ? nullptr : &it->second.where;
}

const PoolJob* DevicePool::best_fit(const Device& d) const {
  const Order* best = nullptr;
  auto consider = [&](const std::map<QueueKey, std::set<Order>>& queue, const std::string& arch) {
    auto q = queue.find({d.info.backend, arch});
    if (q == queue.end() || q->second.empty()) return;
    const Order& head = *q->second.begin();
    if (best == nullptr || head < *best) best = &head;
  };
  consider(shared_queue_, d.info.arch);
  consider(shared_queue_, "");
  if (d.running == 0) {  // an exclusive job needs the device to itself
    consider(exclusive_queue_, d.info.arch);
    consider(exclusive_queue_, "");
  }
  if (best == nullptr) return nullptr;
  return &queued_.at(best->second);
}

std::vector<Placement> DevicePool::place(size_t max) {
  std::vector<Placement> out;
  if (queued_.empty()) return out;
  // Free devices in order, visiting only as many as needed (not a copy of free_ per call:
  // most devices are free at light load). Placing jobs on a device can change only that
  // device's own entry in free_, so the iterator steps past it first.
  for (auto it = free_.begin(); it != free_.end();) {
    Device& d = devices_.at(*it);
    ++it;
    while (out.size() < max && has_room(d)) {
      const PoolJob* job = best_fit(d);
      if (job == nullptr) break;
      int64_t id = job->id;
      bool exclusive = job->exclusive;
      occupy(id, d.agent_id, d.info.backend, d.info.index, exclusive);
      out.push_back(running_.at(id).where);
    }
    if (out.size() >= max || queued_.empty()) break;
  }
  return out;
}

std::vector<DevicePool::DeviceLoad> DevicePool::loads() const {
  std::vector<DeviceLoad> out;
  for (const auto& [key, d] : devices_) out.push_back({d.agent_id, d.info, d.running, d.exclusive});
  return out;
}

}  // namespace kforge
