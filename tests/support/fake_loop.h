// The Coordinator's loop as the Conductor sees it (ConductorLoop), turned by hand: a real
// store on a file, jobs recorded as they are submitted, posted and after-commit work run when
// the test says. For tests of the Conductor without a coordinator or agent.
#pragma once

#include <doctest/doctest.h>

#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/clock.h"
#include "coordinator/generation/conductor.h"

namespace kforge::test {

// The loop as the Conductor sees it, turned by hand.
class FakeLoop : public ConductorLoop {
 public:
  // `clock` stamps what the store records (steps, job leases).
  explicit FakeLoop(std::filesystem::path db, Clock& clock = SystemClock::instance())
      : path_(std::move(db)) {
    auto opened = Store::open(path_, clock);
    REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
    store_ = std::move(opened.value());
  }

  Store& store() override { return *store_; }
  std::filesystem::path store_path() const override { return path_; }
  Result<int64_t> submit(const NewJob& job, const proto::Assign& assign) override {
    NewJob row = job;
    row.request = request_of(assign);
    auto id = store_->enqueue_job(row);
    if (id.ok()) submitted.push_back({*id, assign});
    return id;
  }
  Status cancel(int64_t job_id) override {
    cancelled.push_back(job_id);
    return store_->cancel_job(job_id);
  }
  size_t devices() const override { return live_devices; }
  void post(std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    posted_.push_back(std::move(fn));
  }
  // Whether work was posted (an LLM answer arrived) and not run yet. Thread-safe.
  bool has_posted() {
    std::lock_guard lock(mu_);
    return !posted_.empty();
  }
  void after_commit(std::function<void()> fn) override { after_commit_.push_back(std::move(fn)); }
  void add_result_listener(ResultListener listener) override {
    listeners_.push_back(std::move(listener));
  }
  void add_reload_listener(std::function<void()> fn) override {
    reload_listeners_.push_back(std::move(fn));
  }

  // Runs what was posted, and what that posts, as the loop's turns would; then the
  // after-commit work of those turns.
  void turn() {
    for (;;) {
      std::function<void()> fn;
      {
        std::lock_guard lock(mu_);
        if (posted_.empty()) break;
        fn = std::move(posted_.front());
        posted_.pop_front();
      }
      fn();
    }
    auto after = std::move(after_commit_);
    after_commit_.clear();
    for (auto& fn : after) fn();
  }
  // The job's result arrives (recorded by the loop): every listener hears it.
  void deliver(int64_t job_id, const VerifyResult& verdict) {
    JobRow job = store_->get_job(job_id).value();
    proto::JobResult result;
    result.exit_code = 0;
    result.verify = verdict;
    for (auto& l : listeners_) l(job, result);
  }
  // The job runs on a device for `run` (the clock moves on that long), its result is
  // recorded as the coordinator records it, then every listener hears it.
  void run_job(int64_t job_id, const VerifyResult& verdict, ManualClock& clock, Millis run) {
    auto epoch = store_->assign_job(job_id, "fake-agent", 0);
    REQUIRE_MESSAGE(epoch.ok(), epoch.status().to_string());
    clock.advance(run);
    proto::JobResult result;
    result.exit_code = 0;
    result.verify = verdict;
    auto recorded = store_->record_result(job_id, *epoch, result);
    REQUIRE_MESSAGE(recorded.ok(), recorded.status().to_string());
    deliver(job_id, verdict);
  }
  void reload() {
    for (auto& fn : reload_listeners_) fn();
  }

  struct Submitted {
    int64_t job_id;
    proto::Assign assign;
  };
  std::vector<Submitted> submitted;
  std::vector<int64_t> cancelled;
  size_t live_devices = 0;  // the window is max_active_tasks unless this is larger

 private:
  std::filesystem::path path_;
  std::unique_ptr<Store> store_;
  std::mutex mu_;
  std::deque<std::function<void()>> posted_;
  std::vector<std::function<void()>> after_commit_;
  std::vector<ResultListener> listeners_;
  std::vector<std::function<void()>> reload_listeners_;
};

}  // namespace kforge::test
