// A small command-line flag parser for stepctl and stepbench.
//
// absl::ParseCommandLine exits with status 1 on an unknown flag or a bad value, and the clients promise
// exit code 2 for bad usage, so they parse their own flags: `--name=value`, `--name value`, `--flag` and
// `--noflag` for booleans, `--` ends the flags; everything else is a positional argument.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace stepserve::client {

class FlagSet {
 public:
  explicit FlagSet(std::string program) : program_(std::move(program)) {}

  // The pointee keeps its value when the flag is absent, so initialise it to the default.
  void AddString(const std::string& name, std::string* value, const std::string& help);
  void AddInt(const std::string& name, int64_t* value, const std::string& help);
  void AddDouble(const std::string& name, double* value, const std::string& help);
  void AddBool(const std::string& name, bool* value, const std::string& help);
  // A repeatable flag: every occurrence appends its value (--stop=a --stop=b gives {"a", "b"}).
  void AddStringList(const std::string& name, std::vector<std::string>* values, const std::string& help);

  // Parses args (without the program name). Returns an error message, or nullopt on success.
  std::optional<std::string> Parse(const std::vector<std::string>& args);

  const std::vector<std::string>& positional() const { return positional_; }
  bool help_requested() const { return help_; }
  bool IsSet(const std::string& name) const;  // given on the command line

  // One line per flag with its default and help text.
  std::string Usage() const;

 private:
  enum class Kind { kString, kInt, kDouble, kBool, kStringList };
  struct Flag {
    Kind kind;
    void* value;
    std::string help;
    std::string default_text;
    bool set = false;
  };
  void Add(const std::string& name, Kind kind, void* value, const std::string& help, std::string default_text);
  std::optional<std::string> Assign(const std::string& name, Flag& flag, const std::string& text);

  std::string program_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

}  // namespace stepserve::client
