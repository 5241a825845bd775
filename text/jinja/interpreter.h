// Executes a parsed template. One Interpreter renders one template once; it is not shared between threads.
#ifndef STEPSERVE_TEXT_JINJA_INTERPRETER_H_
#define STEPSERVE_TEXT_JINJA_INTERPRETER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "text/jinja/ast.h"
#include "text/jinja/value.h"

namespace stepserve::text::jinja {

struct RenderOptions {
  // strftime_now(format): returns the formatted current local time. Tests inject a fixed clock.
  std::function<std::string(const std::string& format)> strftime_now;
  size_t max_output_bytes = 64u << 20;         // any one rendered string
  int max_call_depth = 40;                     // nested macro calls (recursion)
  int64_t max_loop_iterations = 1'000'000;     // loop iterations over a whole render
};

// A variable scope. Loops and macro calls open one; if blocks do not (as in jinja2).
class Frame {
 public:
  explicit Frame(std::shared_ptr<Frame> parent) : parent_(std::move(parent)) {}
  const Value* Lookup(const std::string& name) const;
  void Set(const std::string& name, Value value) { vars_[name] = std::move(value); }

 private:
  std::unordered_map<std::string, Value> vars_;
  std::shared_ptr<Frame> parent_;
};

class Interpreter {
 public:
  explicit Interpreter(const RenderOptions& options) : options_(options) {}

  // Renders `body` with variables looked up in `frame`; throws JinjaError.
  std::string Render(const Body& body, std::shared_ptr<Frame> frame);

  // Calls a callable value (macro, builtin, bound method).
  Value Call(const Value& fn, CallArgs& args);

  const RenderOptions& options() const { return options_; }
  // Counts loop iterations (and other per-element work) against max_loop_iterations.
  void CountIterations(int64_t n);
  // Throws when a string being built would exceed max_output_bytes.
  void CheckSize(size_t bytes) const;

  Value Eval(const Expr& e);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow ExecBody(const Body& body);
  Flow Exec(const Node& n);
  Flow ExecFor(const Node& n);
  void ExecSet(const Node& n);
  std::string Capture(const Body& body);
  void Emit(const std::string& s);

  Value EvalInner(const Expr& e);
  Value EvalBinary(const std::string& op, const Value& a, const Value& b);
  bool EvalCompare(const std::string& op, const Value& a, const Value& b);
  Value GetAttr(const Value& obj, const std::string& name);
  Value GetItem(const Value& obj, const Value& key);
  Value Slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
  void EvalArgs(const ArgExprs& exprs, CallArgs* args);
  Value MakeMacro(std::shared_ptr<MacroDef> def);
  Value CallMacro(const MacroDef& def, const std::shared_ptr<Frame>& closure, CallArgs& args);

  RenderOptions options_;
  std::shared_ptr<Frame> frame_;
  std::shared_ptr<Frame> root_;
  std::string* out_ = nullptr;
  int call_depth_ = 0;
  int eval_depth_ = 0;
  int64_t iterations_ = 0;

  friend struct FrameScope;
};

// Iterates a value as a for loop would (list items, dict keys, string characters, nothing for undefined).
std::vector<Value> IterateValue(const Value& v);
// `item in container` with Python semantics.
bool Contains(const Value& container, const Value& item);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_INTERPRETER_H_
