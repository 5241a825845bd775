#include "text/jinja/interpreter.h"

#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "text/jinja/builtins.h"

namespace stepserve::text::jinja {

const Value* Frame::Lookup(const std::string& name) const {
  for (const Frame* f = this; f != nullptr; f = f->parent_.get()) {
    auto it = f->vars_.find(name);
    if (it != f->vars_.end()) return &it->second;
  }
  return nullptr;
}

// Makes `frame` the current scope for its lifetime.
struct FrameScope {
  FrameScope(Interpreter* interp, std::shared_ptr<Frame> frame) : interp(interp), saved(std::move(interp->frame_)) {
    interp->frame_ = std::move(frame);
  }
  ~FrameScope() { interp->frame_ = std::move(saved); }
  Interpreter* interp;
  std::shared_ptr<Frame> saved;
};

namespace {

constexpr int kMaxEvalDepth = 1000;

struct DepthCounter {
  DepthCounter(int* depth, int limit, const char* what) : depth(depth) {
    if (++*depth > limit) {
      --*depth;
      throw JinjaError(absl::StrCat(what, " nested too deeply (limit ", limit, ")"));
    }
  }
  ~DepthCounter() { --*depth; }
  int* depth;
};

// Adds a position to errors that do not have one yet.
[[noreturn]] void Rethrow(const JinjaError& e, const Pos& pos) {
  if (e.line != 0 || pos.line == 0) throw e;
  throw JinjaError(e.what(), pos.line, pos.col, e.code);
}

template <typename F>
int64_t CheckedInt(F op_fn, int64_t a, int64_t b, const char* op) {
  int64_t r = 0;
  if (op_fn(a, b, &r)) throw JinjaError(absl::StrCat("integer overflow in '", op, "'"));
  return r;
}
bool AddOverflow(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool SubOverflow(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool MulOverflow(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

int64_t FloorDiv(int64_t a, int64_t b) {
  if (a == std::numeric_limits<int64_t>::min() && b == -1) throw JinjaError("integer overflow in '//'");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t FloorMod(int64_t a, int64_t b) {
  if (b == -1) return 0;
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

double PyFmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

Value Repeat(const Value& seq, int64_t n, Interpreter& interp) {
  if (n <= 0) return seq.IsString() ? Value::String("") : Value::List({}, seq.is_tuple);
  if (seq.IsString()) {
    interp.CheckSize(seq.s().size() * static_cast<size_t>(n));
    std::string out;
    out.reserve(seq.s().size() * static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) out += seq.s();
    return Value::String(std::move(out));
  }
  interp.CountIterations(static_cast<int64_t>(seq.list->size()) * n);
  std::vector<Value> out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::List(std::move(out), seq.is_tuple);
}

}  // namespace

std::vector<Value> IterateValue(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return *v.list;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& entry : v.dict->entries()) keys.push_back(Value::String(entry.first));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      std::string ch;
      for (char32_t c : DecodeUtf8(v.s())) {
        ch.clear();
        AppendUtf8(c, &ch);
        chars.push_back(Value::String(ch));
      }
      return chars;
    }
    default:
      throw JinjaError(absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

bool Contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.IsString()) {
        throw JinjaError(absl::StrCat("'in <string>' requires string as left operand, not ", TypeName(item)));
      }
      return container.s().find(item.s()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : *container.list) {
        if (Equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return item.IsString() && container.dict->Find(item.s()) != nullptr;
    default:
      throw JinjaError(absl::StrCat("argument of type '", TypeName(container), "' is not iterable"));
  }
}

void Interpreter::CountIterations(int64_t n) {
  iterations_ += n;
  if (iterations_ > options_.max_loop_iterations) {
    throw JinjaError(absl::StrCat("template exceeded the limit of ", options_.max_loop_iterations, " loop iterations"));
  }
}

void Interpreter::CheckSize(size_t bytes) const {
  if (bytes > options_.max_output_bytes) {
    throw JinjaError(absl::StrCat("template output exceeds the limit of ", options_.max_output_bytes, " bytes"));
  }
}

void Interpreter::Emit(const std::string& s) {
  CheckSize(out_->size() + s.size());
  out_->append(s);
}

std::string Interpreter::Render(const Body& body, std::shared_ptr<Frame> frame) {
  root_ = frame;
  FrameScope scope(this, std::move(frame));
  std::string out;
  out_ = &out;
  Flow flow = ExecBody(body);
  if (flow != Flow::kNormal) throw JinjaError("'break' or 'continue' outside of a loop");
  out_ = nullptr;
  return out;
}

std::string Interpreter::Capture(const Body& body) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    Flow flow = ExecBody(body);
    out_ = saved;
    if (flow != Flow::kNormal) throw JinjaError("'break' or 'continue' outside of a loop");
  } catch (...) {
    out_ = saved;
    throw;
  }
  return buffer;
}

Interpreter::Flow Interpreter::ExecBody(const Body& body) {
  for (const NodePtr& n : body) {
    Flow flow = Exec(*n);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::Exec(const Node& n) {
  DepthCounter depth(&eval_depth_, kMaxEvalDepth, "template evaluation");
  try {
    switch (n.type) {
      case Node::Type::kText:
        Emit(n.text);
        return Flow::kNormal;
      case Node::Type::kOutput:
        Emit(ToStr(Eval(*n.expr)));
        return Flow::kNormal;
      case Node::Type::kIf:
        for (const auto& [cond, body] : n.branches) {
          if (Truthy(Eval(*cond))) return ExecBody(body);
        }
        return ExecBody(n.else_body);
      case Node::Type::kFor:
        return ExecFor(n);
      case Node::Type::kSet:
        ExecSet(n);
        return Flow::kNormal;
      case Node::Type::kSetBlock: {
        Value v = Value::String(Capture(n.body));
        if (n.filter != nullptr) {
          // Apply the filter chain innermost first.
          std::vector<const Expr*> chain;
          for (const Expr* f = n.filter.get(); f != nullptr; f = f->a.get()) chain.push_back(f);
          for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
            CallArgs args;
            EvalArgs((*it)->args, &args);
            v = ApplyFilter(*this, (*it)->name, v, args);
          }
        }
        frame_->Set(n.targets[0], std::move(v));
        return Flow::kNormal;
      }
      case Node::Type::kMacro:
        frame_->Set(n.macro->name, MakeMacro(n.macro));
        return Flow::kNormal;
      case Node::Type::kCallBlock: {
        Value caller = MakeMacro(n.macro);
        const Expr& call = *n.expr;
        Value fn = Eval(*call.a);
        CallArgs args;
        EvalArgs(call.args, &args);
        args.kwargs.emplace_back("caller", caller);
        Emit(ToStr(Call(fn, args)));
        return Flow::kNormal;
      }
      case Node::Type::kFilterBlock: {
        Value v = Value::String(Capture(n.body));
        std::vector<const Expr*> chain;
        for (const Expr* f = n.filter.get(); f != nullptr; f = f->a.get()) chain.push_back(f);
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
          CallArgs args;
          EvalArgs((*it)->args, &args);
          v = ApplyFilter(*this, (*it)->name, v, args);
        }
        Emit(ToStr(v));
        return Flow::kNormal;
      }
      case Node::Type::kBreak:
        return Flow::kBreak;
      case Node::Type::kContinue:
        return Flow::kContinue;
      case Node::Type::kScope:
        return ExecBody(n.body);
    }
  } catch (const JinjaError& e) {
    Rethrow(e, n.pos);
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::ExecFor(const Node& n) {
  Value iterable = Eval(*n.expr);
  std::vector<Value> items = IterateValue(iterable);
  auto frame = std::make_shared<Frame>(frame_);
  FrameScope scope(this, frame);
  auto bind = [&](const Value& item) {
    if (n.targets.size() == 1) {
      frame->Set(n.targets[0], item);
      return;
    }
    std::vector<Value> parts = IterateValue(item);
    if (parts.size() != n.targets.size()) {
      throw JinjaError(absl::StrCat("cannot unpack ", Repr(item), " into ", n.targets.size(), " loop variables"));
    }
    for (size_t k = 0; k < n.targets.size(); ++k) frame->Set(n.targets[k], parts[k]);
  };
  if (n.cond != nullptr) {
    std::vector<Value> kept;
    for (const Value& item : items) {
      CountIterations(1);
      bind(item);
      if (Truthy(Eval(*n.cond))) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    FrameScope else_scope(this, std::make_shared<Frame>(scope.saved));
    return ExecBody(n.else_body);
  }
  const int64_t length = static_cast<int64_t>(items.size());
  for (int64_t k = 0; k < length; ++k) {
    CountIterations(1);
    bind(items[k]);
    Value loop = Value::NewDict();
    Dict& d = *loop.dict;
    d.Set("index", Value::Int(k + 1));
    d.Set("index0", Value::Int(k));
    d.Set("revindex", Value::Int(length - k));
    d.Set("revindex0", Value::Int(length - k - 1));
    d.Set("first", Value::Bool(k == 0));
    d.Set("last", Value::Bool(k == length - 1));
    d.Set("length", Value::Int(length));
    d.Set("depth", Value::Int(1));
    d.Set("depth0", Value::Int(0));
    d.Set("previtem", k > 0 ? items[k - 1] : Value::Undefined());
    d.Set("nextitem", k + 1 < length ? items[k + 1] : Value::Undefined());
    d.Set("cycle", Value::Function("loop.cycle", [k](Interpreter&, CallArgs& args) {
      if (args.positional.empty()) throw JinjaError("loop.cycle() needs at least one argument");
      return args.positional[static_cast<size_t>(k) % args.positional.size()];
    }));
    frame->Set("loop", loop);
    Flow flow = ExecBody(n.body);
    if (flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

void Interpreter::ExecSet(const Node& n) {
  Value v = Eval(*n.expr);
  if (n.target != nullptr) {  // {% set ns.attr = v %}
    Value obj = Eval(*n.target->a);
    if (obj.kind != Value::Kind::kNamespace) {
      throw JinjaError("cannot assign attribute on non-namespace object", n.target->pos.line, n.target->pos.col);
    }
    obj.dict->Set(n.target->name, std::move(v));
    return;
  }
  if (n.targets.size() == 1) {
    frame_->Set(n.targets[0], std::move(v));
    return;
  }
  std::vector<Value> parts = IterateValue(v);
  if (parts.size() != n.targets.size()) {
    throw JinjaError(absl::StrCat("cannot unpack ", Repr(v), " into ", n.targets.size(), " variables"));
  }
  for (size_t k = 0; k < n.targets.size(); ++k) frame_->Set(n.targets[k], parts[k]);
}

Value Interpreter::MakeMacro(std::shared_ptr<MacroDef> def) {
  // The closure holds its defining frame weakly (frames hold macros: a strong reference would leak the cycle);
  // a macro called after its frame is gone (defined in a finished loop) sees the template's globals.
  std::weak_ptr<Frame> closure = frame_;
  std::string name = def->name;
  return Value::Function(name, [def = std::move(def), closure](Interpreter& interp, CallArgs& args) {
    std::shared_ptr<Frame> parent = closure.lock();
    if (parent == nullptr) parent = interp.root_;
    return interp.CallMacro(*def, parent, args);
  });
}

Value Interpreter::CallMacro(const MacroDef& def, const std::shared_ptr<Frame>& closure, CallArgs& args) {
  DepthCounter depth(&call_depth_, options_.max_call_depth, "macro calls");
  auto frame = std::make_shared<Frame>(closure);
  FrameScope scope(this, frame);
  if (args.positional.size() > def.params.size()) {
    throw JinjaError(absl::StrCat("macro '", def.name, "' takes ", def.params.size(), " arguments, ",
                                  args.positional.size(), " given"));
  }
  std::vector<bool> bound(def.params.size(), false);
  for (size_t k = 0; k < args.positional.size(); ++k) {
    frame->Set(def.params[k].first, args.positional[k]);
    bound[k] = true;
  }
  for (auto& [key, value] : args.kwargs) {
    if (key == "caller") {
      frame->Set("caller", value);
      continue;
    }
    size_t k = 0;
    while (k < def.params.size() && def.params[k].first != key) ++k;
    if (k == def.params.size()) {
      throw JinjaError(absl::StrCat("macro '", def.name, "' got an unexpected keyword argument '", key, "'"));
    }
    frame->Set(key, value);
    bound[k] = true;
  }
  for (size_t k = 0; k < def.params.size(); ++k) {
    if (bound[k]) continue;
    frame->Set(def.params[k].first,
               def.params[k].second != nullptr ? Eval(*def.params[k].second) : Value::Undefined());
  }
  return Value::String(Capture(def.body));
}

Value Interpreter::Call(const Value& fn, CallArgs& args) {
  if (fn.kind != Value::Kind::kCallable) {
    if (fn.IsUndefined()) throw JinjaError("call of an undefined value");
    throw JinjaError(absl::StrCat("'", TypeName(fn), "' object is not callable"));
  }
  return fn.fn->fn(*this, args);
}

void Interpreter::EvalArgs(const ArgExprs& exprs, CallArgs* args) {
  for (const ExprPtr& e : exprs.positional) args->positional.push_back(Eval(*e));
  for (const auto& [key, e] : exprs.kwargs) args->kwargs.emplace_back(key, Eval(*e));
}

Value Interpreter::Eval(const Expr& e) {
  DepthCounter depth(&eval_depth_, kMaxEvalDepth, "template evaluation");
  try {
    return EvalInner(e);
  } catch (const JinjaError& err) {
    Rethrow(err, e.pos);
  }
}

Value Interpreter::GetAttr(const Value& obj, const std::string& name) {
  Value method;
  switch (obj.kind) {
    case Value::Kind::kDict: {
      // As jinja2's getattr: a method of dict wins over a key of the same name for `d.name`.
      if (GetMethod(obj, name, &method)) return method;
      const Value* v = obj.dict->Find(name);
      return v != nullptr ? *v : Value::Undefined();
    }
    case Value::Kind::kNamespace: {
      const Value* v = obj.dict->Find(name);
      return v != nullptr ? *v : Value::Undefined();
    }
    default:
      // Attributes of undefined are undefined (as @huggingface/jinja and jinja2's ChainableUndefined; jinja2's
      // default Undefined raises UndefinedError here).
      if (GetMethod(obj, name, &method)) return method;
      return Value::Undefined();
  }
}

Value Interpreter::GetItem(const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      if (!key.IsString()) return Value::Undefined();
      const Value* v = obj.dict->Find(key.s());
      return v != nullptr ? *v : Value::Undefined();
    }
    case Value::Kind::kList: {
      if (!key.IsIntegral()) {
        if (key.IsString()) return GetAttr(obj, key.s());
        throw JinjaError(absl::StrCat("list indices must be integers, not ", TypeName(key)));
      }
      int64_t size = static_cast<int64_t>(obj.list->size());
      int64_t k = key.AsInt();
      if (k < 0) k += size;
      if (k < 0 || k >= size) return Value::Undefined();
      return (*obj.list)[static_cast<size_t>(k)];
    }
    case Value::Kind::kString: {
      if (!key.IsIntegral()) {
        if (key.IsString()) return GetAttr(obj, key.s());
        throw JinjaError(absl::StrCat("string indices must be integers, not ", TypeName(key)));
      }
      std::u32string chars = DecodeUtf8(obj.s());
      int64_t size = static_cast<int64_t>(chars.size());
      int64_t k = key.AsInt();
      if (k < 0) k += size;
      if (k < 0 || k >= size) return Value::Undefined();
      std::string out;
      AppendUtf8(chars[static_cast<size_t>(k)], &out);
      return Value::String(std::move(out));
    }
    default:
      return Value::Undefined();
  }
}

Value Interpreter::Slice(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v) {
  auto as_index = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.IsUndefined() || v.IsNone()) return std::nullopt;
    if (!v.IsIntegral()) throw JinjaError(absl::StrCat("slice ", what, " must be an integer or none"));
    return v.AsInt();
  };
  std::optional<int64_t> start = as_index(start_v, "start"), stop = as_index(stop_v, "stop");
  int64_t step = as_index(step_v, "step").value_or(1);
  if (step == 0) throw JinjaError("slice step cannot be zero");
  auto indices = [&](int64_t size) {
    std::vector<int64_t> out;
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v.has_value()) return dflt;
      int64_t x = *v < 0 ? *v + size : *v;
      if (step > 0) return std::min(std::max<int64_t>(x, 0), size);
      return std::min(std::max<int64_t>(x, -1), size - 1);
    };
    int64_t lo = clamp(start, step > 0 ? 0 : size - 1);
    int64_t hi = clamp(stop, step > 0 ? size : -1);
    for (int64_t k = lo; step > 0 ? k < hi : k > hi; k += step) out.push_back(k);
    return out;
  };
  if (obj.IsString()) {
    std::u32string chars = DecodeUtf8(obj.s());
    std::u32string out;
    for (int64_t k : indices(static_cast<int64_t>(chars.size()))) out.push_back(chars[static_cast<size_t>(k)]);
    return Value::String(EncodeUtf8(out));
  }
  if (obj.IsList()) {
    std::vector<Value> out;
    for (int64_t k : indices(static_cast<int64_t>(obj.list->size()))) out.push_back((*obj.list)[static_cast<size_t>(k)]);
    return Value::List(std::move(out), obj.is_tuple);
  }
  if (obj.IsUndefined()) return Value::Undefined();
  throw JinjaError(absl::StrCat("'", TypeName(obj), "' object is not subscriptable"));
}

Value Interpreter::EvalBinary(const std::string& op, const Value& a, const Value& b) {
  if (a.IsUndefined() || b.IsUndefined()) {
    throw JinjaError(absl::StrCat("undefined value used in '", op, "' operation"));
  }
  auto unsupported = [&]() -> Value {
    throw JinjaError(absl::StrCat("unsupported operand type(s) for ", op, ": '", TypeName(a), "' and '", TypeName(b),
                                  "'"));
  };
  const bool ints = a.IsIntegral() && b.IsIntegral();
  const bool nums = a.IsNumber() && b.IsNumber();
  if (op == "+") {
    if (ints) return Value::Int(CheckedInt(AddOverflow, a.AsInt(), b.AsInt(), "+"));
    if (nums) return Value::Float(a.AsDouble() + b.AsDouble());
    if (a.IsString() && b.IsString()) {
      CheckSize(a.s().size() + b.s().size());
      return Value::String(a.s() + b.s());
    }
    if (a.IsList() && b.IsList() && a.is_tuple == b.is_tuple) {
      std::vector<Value> out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::List(std::move(out), a.is_tuple);
    }
    if (a.IsString() || b.IsString()) {
      throw JinjaError(absl::StrCat("can only concatenate str (not \"", TypeName(a.IsString() ? b : a), "\") to str"));
    }
    return unsupported();
  }
  if (op == "-") {
    if (ints) return Value::Int(CheckedInt(SubOverflow, a.AsInt(), b.AsInt(), "-"));
    if (nums) return Value::Float(a.AsDouble() - b.AsDouble());
    return unsupported();
  }
  if (op == "*") {
    if (ints) return Value::Int(CheckedInt(MulOverflow, a.AsInt(), b.AsInt(), "*"));
    if (nums) return Value::Float(a.AsDouble() * b.AsDouble());
    if ((a.IsString() || a.IsList()) && b.IsIntegral()) return Repeat(a, b.AsInt(), *this);
    if ((b.IsString() || b.IsList()) && a.IsIntegral()) return Repeat(b, a.AsInt(), *this);
    return unsupported();
  }
  if (op == "/") {
    if (!nums) return unsupported();
    if (b.AsDouble() == 0) throw JinjaError("division by zero");
    return Value::Float(a.AsDouble() / b.AsDouble());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.IsString()) throw JinjaError("printf-style '%' string formatting is not supported");
    if (!nums) return unsupported();
    if (b.AsDouble() == 0) throw JinjaError(op == "%" ? "modulo by zero" : "division by zero");
    if (ints) return Value::Int(op == "%" ? FloorMod(a.AsInt(), b.AsInt()) : FloorDiv(a.AsInt(), b.AsInt()));
    double x = a.AsDouble(), y = b.AsDouble();
    return Value::Float(op == "%" ? PyFmod(x, y) : std::floor(x / y));
  }
  if (op == "**") {
    if (!nums) return unsupported();
    if (ints && b.AsInt() >= 0) {
      int64_t base = a.AsInt(), result = 1;
      for (int64_t k = 0; k < b.AsInt(); ++k) {
        if (__builtin_mul_overflow(result, base, &result)) throw JinjaError("integer overflow in '**'");
        if (result == 0 || result == 1) break;
      }
      return Value::Int(result);
    }
    return Value::Float(std::pow(a.AsDouble(), b.AsDouble()));
  }
  throw JinjaError("unknown operator " + op);
}

bool Interpreter::EvalCompare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return Equals(a, b);
  if (op == "!=") return !Equals(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "notin") return !Contains(b, a);
  if (a.IsUndefined() || b.IsUndefined()) {
    throw JinjaError(absl::StrCat("undefined value used in '", op, "' comparison"));
  }
  int c = Compare(a, b);
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

Value Interpreter::EvalInner(const Expr& e) {
  switch (e.type) {
    case Expr::Type::kLiteral:
      return e.literal;
    case Expr::Type::kName: {
      const Value* v = frame_->Lookup(e.name);
      return v != nullptr ? *v : Value::Undefined();
    }
    case Expr::Type::kList:
    case Expr::Type::kTuple: {
      std::vector<Value> items;
      items.reserve(e.items.size());
      for (const ExprPtr& item : e.items) items.push_back(Eval(*item));
      return Value::List(std::move(items), e.type == Expr::Type::kTuple);
    }
    case Expr::Type::kDict: {
      Value d = Value::NewDict();
      for (const auto& [k, v] : e.pairs) {
        Value key = Eval(*k);
        if (!key.IsString()) throw JinjaError("only string keys are supported in dict literals");
        d.dict->Set(key.s(), Eval(*v));
      }
      return d;
    }
    case Expr::Type::kGetAttr:
      return GetAttr(Eval(*e.a), e.name);
    case Expr::Type::kGetItem:
      return GetItem(Eval(*e.a), Eval(*e.b));
    case Expr::Type::kSlice: {
      Value obj = Eval(*e.items[0]);
      Value parts[3];
      for (int k = 0; k < 3; ++k) {
        if (e.items[static_cast<size_t>(k) + 1] != nullptr) parts[k] = Eval(*e.items[static_cast<size_t>(k) + 1]);
      }
      return Slice(obj, parts[0], parts[1], parts[2]);
    }
    case Expr::Type::kCall: {
      Value fn = Eval(*e.a);
      CallArgs args;
      EvalArgs(e.args, &args);
      if (fn.IsUndefined()) {
        std::string what = e.a->type == Expr::Type::kName      ? "'" + e.a->name + "' is undefined"
                           : e.a->type == Expr::Type::kGetAttr ? "'" + e.a->name + "' is undefined or not a method"
                                                               : "call of an undefined value";
        throw JinjaError(what);
      }
      return Call(fn, args);
    }
    case Expr::Type::kFilter: {
      Value input = e.a != nullptr ? Eval(*e.a) : Value::Undefined();
      CallArgs args;
      EvalArgs(e.args, &args);
      return ApplyFilter(*this, e.name, input, args);
    }
    case Expr::Type::kTest: {
      Value v = Eval(*e.a);
      CallArgs args;
      EvalArgs(e.args, &args);
      return Value::Bool(ApplyTest(*this, e.name, v, args) != e.negated);
    }
    case Expr::Type::kNeg:
    case Expr::Type::kPos: {
      Value v = Eval(*e.a);
      if (!v.IsNumber()) {
        throw JinjaError(absl::StrCat("bad operand type for unary ", e.type == Expr::Type::kNeg ? "-" : "+", ": '",
                                      TypeName(v), "'"));
      }
      if (e.type == Expr::Type::kPos) return v.IsIntegral() ? Value::Int(v.AsInt()) : v;
      if (v.IsIntegral()) {
        if (v.AsInt() == std::numeric_limits<int64_t>::min()) throw JinjaError("integer overflow in unary '-'");
        return Value::Int(-v.AsInt());
      }
      return Value::Float(-v.d);
    }
    case Expr::Type::kNot:
      return Value::Bool(!Truthy(Eval(*e.a)));
    case Expr::Type::kBinary:
      return EvalBinary(e.name, Eval(*e.a), Eval(*e.b));
    case Expr::Type::kConcat: {
      std::string out;
      for (const ExprPtr& item : e.items) {
        out += ToStr(Eval(*item));
        CheckSize(out.size());
      }
      return Value::String(std::move(out));
    }
    case Expr::Type::kCompare: {
      Value left = Eval(*e.a);
      for (const auto& [op, operand] : e.ops) {
        Value right = Eval(*operand);
        if (!EvalCompare(op, left, right)) return Value::Bool(false);
        left = std::move(right);
      }
      return Value::Bool(true);
    }
    case Expr::Type::kAnd: {
      Value a = Eval(*e.a);
      return Truthy(a) ? Eval(*e.b) : a;
    }
    case Expr::Type::kOr: {
      Value a = Eval(*e.a);
      return Truthy(a) ? a : Eval(*e.b);
    }
    case Expr::Type::kCondExpr:
      if (Truthy(Eval(*e.a))) return Eval(*e.b);
      return e.c != nullptr ? Eval(*e.c) : Value::Undefined();
  }
  throw JinjaError("unknown expression");
}

}  // namespace stepserve::text::jinja
