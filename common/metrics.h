// Prometheus text exposition (format 0.0.4): the few pieces /metrics is written with.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kforge {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// "# HELP" and "# TYPE" lines; `type` is counter | gauge | histogram.
void metric_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help);
// One sample: name{labels} value. Label values are escaped.
void metric_sample(std::string& out, std::string_view name, const MetricLabels& labels,
                   double value);

// A cumulative histogram with fixed upper bounds (seconds, usually).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}
  void observe(double value);
  // The family's HELP/TYPE lines, then _bucket{le=...}, _sum and _count.
  void render(std::string& out, std::string_view name, std::string_view help) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Bounds for latencies from a millisecond to ten minutes.
std::vector<double> latency_buckets_s();

}  // namespace kforge
