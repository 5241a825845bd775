// A parsed Jinja template, rendered with the semantics of jinja2 as Hugging Face transformers configures it
// for chat templates (trim_blocks, lstrip_blocks, loop controls, raise_exception, strftime_now, a tojson
// with ensure_ascii=False). See README.md in this directory for the supported subset.
#ifndef STEPSERVE_TEXT_JINJA_TEMPLATE_H_
#define STEPSERVE_TEXT_JINJA_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "text/jinja/ast.h"
#include "text/jinja/interpreter.h"

namespace stepserve::text::jinja {

class Template {
 public:
  // INVALID_ARGUMENT naming `name`, the line and the column when the source does not parse.
  static absl::StatusOr<std::shared_ptr<const Template>> Parse(std::string_view source, std::string name = "template");

  // Renders with the keys of `context` (an object) as variables. Errors: INVALID_ARGUMENT naming the template
  // line and column; raise_exception(msg) gives INVALID_ARGUMENT "... raise_exception: msg". Thread-safe.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;

  const std::string& name() const { return name_; }

 private:
  Template() = default;
  std::string name_;
  Body body_;
};

// Formats the current local time with strftime (the default of RenderOptions::strftime_now).
std::string StrftimeNow(const std::string& format);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_TEMPLATE_H_
