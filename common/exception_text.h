// The message of an exception for a status: c10::Error's without its C++ backtrace, others' what().
#pragma once

#include <exception>
#include <string>

#include <c10/util/Exception.h>

namespace stepserve {

inline std::string ExceptionText(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

}  // namespace stepserve
