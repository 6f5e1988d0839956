#include "common/metrics.h"

#include <cmath>
#include <cstdio>

namespace kforge {
namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void labels_text(std::string& out, const MetricLabels& labels) {
  if (labels.empty()) return;
  out += '{';
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += labels[i].first;
    out += "=\"";
    for (char c : labels[i].second) {
      if (c == '\\')
        out += "\\\\";
      else if (c == '"')
        out += "\\\"";
      else if (c == '\n')
        out += "\\n";
      else
        out += c;
    }
    out += '"';
  }
  out += '}';
}

}  // namespace

void metric_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void metric_sample(std::string& out, std::string_view name, const MetricLabels& labels,
                   double value) {
  out.append(name);
  labels_text(out, labels);
  out.append(" ").append(number(value)).append("\n");
}

void Histogram::observe(double value) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (value <= bounds_[i]) {
      counts_[i]++;
      break;
    }
  }
  sum_ += value;
  count_++;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  metric_family(out, name, "histogram", help);
  std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    metric_sample(out, bucket, {{"le", number(bounds_[i])}}, static_cast<double>(cumulative));
  }
  metric_sample(out, bucket, {{"le", "+Inf"}}, static_cast<double>(count_));
  metric_sample(out, std::string(name) + "_sum", {}, sum_);
  metric_sample(out, std::string(name) + "_count", {}, static_cast<double>(count_));
}

std::vector<double> latency_buckets_s() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}

}  // namespace kforge
