// Abseil-style helpers for propagating absl::Status / absl::StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define STEPSERVE_CONCAT_INNER(a, b) a##b
#define STEPSERVE_CONCAT(a, b) STEPSERVE_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::absl::Status _status = (expr);          \
    if (!_status.ok()) return _status;        \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                          \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL(STEPSERVE_CONCAT(_statusor_, __LINE__), lhs, rexpr)
