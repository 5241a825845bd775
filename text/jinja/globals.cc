#include "text/jinja/globals.h"

#include <ctime>

#include "absl/strings/str_cat.h"
#include "text/jinja/template.h"

namespace stepserve::text::jinja {

std::string StrftimeNow(const std::string& format) {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[512];
  size_t n = std::strftime(buf, sizeof(buf), format.c_str(), &local);
  return std::string(buf, n);
}

namespace {

Value Range(Interpreter& interp, CallArgs& args) {
  if (!args.kwargs.empty()) throw JinjaError("range() takes no keyword arguments");
  std::vector<int64_t> n;
  for (const Value& v : args.positional) {
    if (!v.IsIntegral()) throw JinjaError(absl::StrCat("range(): '", TypeName(v), "' object cannot be interpreted as an integer"));
    n.push_back(v.AsInt());
  }
  int64_t start = 0, stop = 0, step = 1;
  if (n.size() == 1) {
    stop = n[0];
  } else if (n.size() == 2 || n.size() == 3) {
    start = n[0];
    stop = n[1];
    if (n.size() == 3) step = n[2];
  } else {
    throw JinjaError("range() takes 1 to 3 arguments");
  }
  if (step == 0) throw JinjaError("range() arg 3 must not be zero");
  std::vector<Value> out;
  for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
    interp.CountIterations(1);
    out.push_back(Value::Int(k));
    if ((step > 0 && k > INT64_MAX - step) || (step < 0 && k < INT64_MIN - step)) break;
  }
  return Value::List(std::move(out));
}

Value Namespace(Interpreter&, CallArgs& args) {
  Value ns = Value::NewNamespace();
  if (args.positional.size() > 1) throw JinjaError("namespace() takes at most 1 positional argument");
  if (!args.positional.empty()) {
    const Value& init = args.positional[0];
    if (init.IsDict()) {
      for (const auto& [k, v] : init.dict->entries()) ns.dict->Set(k, v);
    } else if (init.IsList()) {
      for (const Value& pair : *init.list) {
        if (!pair.IsList() || pair.list->size() != 2 || !(*pair.list)[0].IsString()) {
          throw JinjaError("namespace(): expected a mapping or (key, value) pairs");
        }
        ns.dict->Set((*pair.list)[0].s(), (*pair.list)[1]);
      }
    } else if (!init.IsUndefined()) {
      throw JinjaError("namespace(): expected a mapping");
    }
  }
  for (const auto& [k, v] : args.kwargs) ns.dict->Set(k, v);
  return ns;
}

Value DictFn(Interpreter&, CallArgs& args) {
  Value d = Value::NewDict();
  for (const Value& init : args.positional) {
    if (!init.IsDict()) throw JinjaError("dict(): positional argument must be a mapping");
    for (const auto& [k, v] : init.dict->entries()) d.dict->Set(k, v);
  }
  for (const auto& [k, v] : args.kwargs) d.dict->Set(k, v);
  return d;
}

}  // namespace

void InstallGlobals(Frame* frame) {
  frame->Set("range", Value::Function("range", Range));
  frame->Set("namespace", Value::Function("namespace", Namespace));
  frame->Set("dict", Value::Function("dict", DictFn));
  frame->Set("raise_exception", Value::Function("raise_exception", [](Interpreter&, CallArgs& args) -> Value {
    std::string message = args.positional.empty() ? "" : ToStr(args.positional[0]);
    throw JinjaError("raise_exception: " + message);
  }));
  frame->Set("strftime_now", Value::Function("strftime_now", [](Interpreter& interp, CallArgs& args) {
    if (args.positional.size() != 1 || !args.positional[0].IsString()) {
      throw JinjaError("strftime_now() takes one format string");
    }
    const auto& fn = interp.options().strftime_now;
    return Value::String(fn ? fn(args.positional[0].s()) : StrftimeNow(args.positional[0].s()));
  }));
}

}  // namespace stepserve::text::jinja
