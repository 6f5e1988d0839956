// common/: what both daemons and the CLI share -- errors as values (this file), config,
// protocol, processes and their box, clock, logging, metrics, files, hashes and text helpers;
// one header per concern, no component's logic.
//
// Status and Result<T>: errors as values at the core of kforge.
//
// A Status is ok or carries an error code and a message meant for a person
// (it names the file, field or line and says what was expected). Result<T>
// holds either a T or a non-ok Status. Exceptions are for the edges only
// (main, third-party callbacks); library code returns these.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace kforge {

enum class Code {
  ok = 0,
  invalid_argument,     // the input is malformed or breaks a rule
  not_found,            // a named thing does not exist
  already_exists,       // a thing to create exists already
  failed_precondition,  // the system is not in a state that allows this
  io_error,             // the filesystem, a socket or a child process failed
  timeout,              // a deadline passed
  stale,                // the caller's view (epoch, incarnation) is out of date
  unavailable,          // a peer or service cannot be reached now; retry later
  no_space,             // storage refuses writes (disk full, a failed write or sync); retry later
  internal,             // a bug in kforge
};

const char* code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == Code::ok; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "code_name: message", or "ok".
  std::string to_string() const;

 private:
  Code code_ = Code::ok;
  std::string message_;
};

inline Status invalid_argument(std::string m) {
  return Status(Code::invalid_argument, std::move(m));
}
inline Status not_found(std::string m) {
  return Status(Code::not_found, std::move(m));
}
inline Status failed_precondition(std::string m) {
  return Status(Code::failed_precondition, std::move(m));
}
inline Status io_error(std::string m) {
  return Status(Code::io_error, std::move(m));
}
inline Status internal_error(std::string m) {
  return Status(Code::internal, std::move(m));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // The value, or `fallback` when there is none.
  T value_or(T fallback) const& { return ok() ? std::get<T>(v_) : std::move(fallback); }

  // The error; an ok Status when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kforge

// Returns early from the calling function when `expr` (a Status) is not ok.
#define KF_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::kforge::Status kf_status_ = (expr);    \
    if (!kf_status_.ok()) return kf_status_; \
  } while (0)
