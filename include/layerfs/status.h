// Status and Result<T>: how every fallible call in layerfs reports an expected failure.
//
// A Status is either OK or carries an errno value plus a one-line message that names the thing that
// failed ("blobs/sha256/ab12…: digest mismatch"). The errno is what a FUSE reply or an exit code is
// derived from; the message is what a user reads. Result<T> holds a T or a non-OK Status.
#ifndef LAYERFS_STATUS_H_
#define LAYERFS_STATUS_H_

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace layerfs {

class [[nodiscard]] Status {
 public:
  Status() = default;

  static Status Ok() { return Status(); }
  // An error with an errno and a message; `code` must not be 0.
  static Status Error(int code, std::string message) { return Status(code, std::move(message)); }
  // "context: strerror(code)".
  static Status FromErrno(int code, std::string_view context);
  // Data that fails its own checks (a tar, an index, a manifest): maps to EIO.
  static Status Corrupt(std::string message) { return Status(EIO, std::move(message)); }
  // Input that is well-formed but not acceptable: maps to EINVAL.
  static Status Invalid(std::string message) { return Status(EINVAL, std::move(message)); }
  static Status NotFound(std::string message) { return Status(ENOENT, std::move(message)); }
  static Status Unsupported(std::string message) { return Status(ENOTSUP, std::move(message)); }

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns this status with "prefix: " put before its message; OK stays OK.
  Status WithContext(std::string_view prefix) const;

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}

  int code_ = 0;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  // REQUIRES: ok()
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // OK when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

#define LAYERFS_CONCAT_INNER_(a, b) a##b
#define LAYERFS_CONCAT_(a, b) LAYERFS_CONCAT_INNER_(a, b)

#define LAYERFS_RETURN_IF_ERROR(expr)       \
  do {                                      \
    ::layerfs::Status status_ = (expr);     \
    if (!status_.ok()) return status_;      \
  } while (0)

#define LAYERFS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()

// `LAYERFS_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its Status.
#define LAYERFS_ASSIGN_OR_RETURN(lhs, expr) \
  LAYERFS_ASSIGN_OR_RETURN_IMPL_(LAYERFS_CONCAT_(result_, __LINE__), lhs, expr)

}  // namespace layerfs

#endif  // LAYERFS_STATUS_H_
