#include "text/jinja/template.h"

#include <new>

#include "absl/strings/str_cat.h"
#include "text/jinja/globals.h"
#include "text/jinja/json_value.h"
#include "text/jinja/lexer.h"
#include "text/jinja/parser.h"

namespace stepserve::text::jinja {
namespace {

absl::Status ToStatus(const JinjaError& e, const std::string& name, std::string_view what) {
  std::string where = absl::StrCat("template '", name, "'");
  if (e.line > 0) absl::StrAppend(&where, ", line ", e.line);
  if (e.col > 0) absl::StrAppend(&where, ", column ", e.col);
  return absl::Status(e.code, absl::StrCat(std::string(what), " error in ", where, ": ", e.what()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Template>> Template::Parse(std::string_view source, std::string name) {
  std::shared_ptr<Template> t(new Template());
  t->name_ = std::move(name);
  try {
    t->body_ = ParseTokens(Tokenize(source));
  } catch (const JinjaError& e) {
    return ToStatus(e, t->name_, "syntax");
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory parsing template '", t->name_, "'"));
  }
  return std::shared_ptr<const Template>(std::move(t));
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& context, const RenderOptions& options) const {
  if (!context.is_object() && !context.is_null()) {
    return absl::InvalidArgumentError("template context must be a JSON object");
  }
  try {
    auto globals = std::make_shared<Frame>(nullptr);
    InstallGlobals(globals.get());
    auto vars = std::make_shared<Frame>(globals);
    if (context.is_object()) {
      for (auto it = context.begin(); it != context.end(); ++it) vars->Set(it.key(), FromJson(it.value()));
    }
    Interpreter interp(options);
    return interp.Render(body_, vars);
  } catch (const JinjaError& e) {
    return ToStatus(e, name_, "render");
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory rendering template '", name_, "'"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("rendering template '", name_, "': ", e.what()));
  }
}

}  // namespace stepserve::text::jinja
