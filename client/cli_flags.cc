#include "client/cli_flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace stepserve::client {

void FlagSet::Add(const std::string& name, Kind kind, void* value, const std::string& help,
                  std::string default_text) {
  flags_[name] = Flag{kind, value, help, std::move(default_text)};
}

void FlagSet::AddString(const std::string& name, std::string* value, const std::string& help) {
  Add(name, Kind::kString, value, help, "\"" + *value + "\"");
}
void FlagSet::AddInt(const std::string& name, int64_t* value, const std::string& help) {
  Add(name, Kind::kInt, value, help, std::to_string(*value));
}
void FlagSet::AddDouble(const std::string& name, double* value, const std::string& help) {
  std::ostringstream os;
  os << *value;
  Add(name, Kind::kDouble, value, help, os.str());
}
void FlagSet::AddBool(const std::string& name, bool* value, const std::string& help) {
  Add(name, Kind::kBool, value, help, *value ? "true" : "false");
}

void FlagSet::AddStringList(const std::string& name, std::vector<std::string>* values, const std::string& help) {
  Add(name, Kind::kStringList, values, help, "(repeatable)");
}

bool FlagSet::IsSet(const std::string& name) const {
  auto it = flags_.find(name);
  return it != flags_.end() && it->second.set;
}

std::optional<std::string> FlagSet::Assign(const std::string& name, Flag& flag, const std::string& text) {
  const std::string bad = "invalid value \"" + text + "\" for --" + name;
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.value) = text;
      break;
    case Kind::kStringList:
      static_cast<std::vector<std::string>*>(flag.value)->push_back(text);
      break;
    case Kind::kInt: {
      if (text.empty()) return bad + ": expected an integer";
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno != 0 || *end != '\0') return bad + ": expected an integer";
      *static_cast<int64_t*>(flag.value) = v;
      break;
    }
    case Kind::kDouble: {
      if (text.empty()) return bad + ": expected a number";
      char* end = nullptr;
      errno = 0;
      double v = std::strtod(text.c_str(), &end);
      if (errno != 0 || *end != '\0' || !std::isfinite(v)) return bad + ": expected a finite number";
      *static_cast<double*>(flag.value) = v;
      break;
    }
    case Kind::kBool: {
      if (text == "true" || text == "1" || text == "yes") {
        *static_cast<bool*>(flag.value) = true;
      } else if (text == "false" || text == "0" || text == "no") {
        *static_cast<bool*>(flag.value) = false;
      } else {
        return bad + ": expected true or false";
      }
      break;
    }
  }
  flag.set = true;
  return std::nullopt;
}

std::optional<std::string> FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional_.insert(positional_.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg == "-h" || arg == "--help" || arg == "-help") {
      help_ = true;
      continue;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
      continue;
    }
    // Accept -name as well as --name, like absl and gflags.
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (auto eq = body.find('='); eq != std::string::npos) {
      value = body.substr(eq + 1);
      body = body.substr(0, eq);
    }
    auto it = flags_.find(body);
    if (it == flags_.end()) {
      // --nofoo for a boolean foo.
      if (!value && body.rfind("no", 0) == 0) {
        auto neg = flags_.find(body.substr(2));
        if (neg != flags_.end() && neg->second.kind == Kind::kBool) {
          if (auto err = Assign(neg->first, neg->second, "false")) return err;
          continue;
        }
      }
      return "unknown flag --" + body;
    }
    Flag& flag = it->second;
    if (!value) {
      if (flag.kind == Kind::kBool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return "missing value for --" + body;
      }
    }
    if (auto err = Assign(body, flag, *value)) return err;
  }
  return std::nullopt;
}

std::string FlagSet::Usage() const {
  std::ostringstream os;
  for (const auto& [name, flag] : flags_) {
    os << "  --" << name << " (" << flag.help << ") default: " << flag.default_text << "\n";
  }
  return os.str();
}

}  // namespace stepserve::client
