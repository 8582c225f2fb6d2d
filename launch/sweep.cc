// Sweeps: expanding a sweep file into validated runs (through the normal config machinery, the
// axis values applied as --set overrides), the dry-run table, running each run as a
// `switchyard train` child process, and gathering finished runs into the report's tables.
#include "launch/sweep.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

extern char** environ;

namespace sy {
namespace {

namespace fs = std::filesystem;

constexpr const char* kComputeBudget = "compute_budget";
constexpr const char* kTokensPerActiveParameter = "tokens_per_active_parameter";

std::string at(const std::string& file, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? file : absl::StrCat(file, ":", mark.line + 1);
}

absl::Status error(const std::string& file, const YAML::Node& node, const std::string& key, const std::string& text) {
  return absl::InvalidArgumentError(absl::StrCat(at(file, node), ": ", key, ": ", text));
}

// A value as the sweep file wrote it; lists and maps in YAML flow style (as --set reads them).
std::string value_text(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out.SetSeqFormat(YAML::Flow);
  out.SetMapFormat(YAML::Flow);
  out << node;
  return out.c_str();
}

std::string leaf(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

// Characters that are safe in a directory name; others become '_'.
std::string sanitize(const std::string& text) {
  std::string out;
  for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' || c == '_') ? c : '_';
  return out;
}

std::string suggestion(const std::string& word, const std::vector<std::string>& choices) {
  const std::string best = closest_name(word, choices);
  return best.empty() ? absl::StrCat(" (expected one of ", absl::StrJoin(choices, ", "), ")")
                      : absl::StrCat(" (did you mean ", best, "?)");
}

bool is_derived(const std::string& key) { return key == kComputeBudget || key == kTokensPerActiveParameter; }

std::optional<double> positive_number(const YAML::Node& node) {
  double value = 0;
  if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &value) || !std::isfinite(value) || value <= 0) {
    return std::nullopt;
  }
  return value;
}

// One axis: a key and its values, each with the node it came from (for messages).
struct Axis {
  std::string key;
  std::vector<YAML::Node> values;
  std::string where;  // "axes.grid.moe.top_k"
};

// An assignment applied to the base, and where the sweep file wrote it.
struct Assignment {
  std::string text;   // "moe.top_k=4"
  std::string where;  // "sweep.yaml:12: axes.grid.moe.top_k"
};

class SweepParser {
 public:
  SweepParser(std::string file, fs::path dir, const std::vector<std::string>& overrides)
      : file_(std::move(file)), dir_(std::move(dir)) {
    for (const std::string& text : overrides) overrides_.push_back({text, "--set " + text});
  }

  absl::StatusOr<Sweep> parse(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ":", e.mark.line + 1, ":", e.mark.column + 1,
                                                     ": invalid YAML: ", e.msg));
    }
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ": expected a map (base:, axes:, derive:, name:), got ",
                                                     root.IsNull() ? "nothing" : "something else"));
    }
    try {
      return parse_root(root);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ":", e.mark.line + 1, ": ", e.msg));
    }
  }

 private:
  absl::StatusOr<Sweep> parse_root(const YAML::Node& root) {
    static const std::vector<std::string> kSections = {"base", "set", "axes", "derive", "name", "estimate", "output"};
    Sweep sweep;
    sweep.path = file_;
    sweep.name = fs::path(file_).stem().string();
    for (const auto& item : root) {
      const std::string key = item.first.Scalar();
      if (std::find(kSections.begin(), kSections.end(), key) == kSections.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(at(file_, item.first), ": unknown key '", key, "'", suggestion(key, kSections)));
      }
    }
    const YAML::Node base = root["base"];
    if (!base) return absl::InvalidArgumentError(absl::StrCat(file_, ": base: missing (a config file or an inline map)"));
    if (base.IsScalar()) {
      base_path_ = fs::path(base.Scalar()).is_absolute() ? fs::path(base.Scalar()) : (dir_ / base.Scalar()).lexically_normal();
      if (!fs::exists(base_path_)) return error(file_, base, "base", absl::StrCat("no config file '", base_path_.string(), "'"));
    } else if (base.IsMap()) {
      base_yaml_ = YAML::Dump(base);
    } else {
      return error(file_, base, "base", "expected a config file or an inline map of sections");
    }
    if (const YAML::Node set = root["set"]) {
      if (!set.IsMap()) return error(file_, set, "set", "expected a map of key: value");
      for (const auto& item : set) {
        const std::string key = item.first.Scalar();
        fixed_.push_back({absl::StrCat(key, "=", value_text(item.second)), absl::StrCat(at(file_, item.first), ": set.", key)});
      }
    }
    if (const YAML::Node derive = root["derive"]) {
      if (!derive.IsMap()) return error(file_, derive, "derive", "expected a map (compute_budget: or tokens_per_active_parameter:)");
      for (const auto& item : derive) {
        const std::string key = item.first.Scalar();
        if (!is_derived(key)) {
          return absl::InvalidArgumentError(absl::StrCat(at(file_, item.first), ": derive: unknown key '", key, "'",
                                                         suggestion(key, {kComputeBudget, kTokensPerActiveParameter})));
        }
        if (!positive_number(item.second)) return error(file_, item.second, "derive." + key, "expected a positive number");
        derive_[key] = item.second;
      }
    }
    if (derive_.size() > 1) {
      return error(file_, root["derive"], "derive", "give compute_budget or tokens_per_active_parameter, not both");
    }
    if (const YAML::Node estimate = root["estimate"]) {
      if (!estimate.IsMap()) return error(file_, estimate, "estimate", "expected a map (flops_per_second:, tokens_per_second:, mfu:)");
      for (const auto& item : estimate) {
        const std::string key = item.first.Scalar();
        std::optional<double> value = positive_number(item.second);
        if (key == "flops_per_second" && value) {
          sweep.flops_per_second = *value;
        } else if (key == "tokens_per_second" && value) {
          sweep.tokens_per_second = *value;
        } else if (key == "mfu" && value && *value <= 1) {
          sweep.mfu = *value;
        } else if (key == "flops_per_second" || key == "tokens_per_second" || key == "mfu") {
          return error(file_, item.second, "estimate." + key, key == "mfu" ? "expected a number in (0, 1]" : "expected a positive number");
        } else {
          return absl::InvalidArgumentError(absl::StrCat(at(file_, item.first), ": estimate: unknown key '", key, "'",
                                                         suggestion(key, {"flops_per_second", "tokens_per_second", "mfu"})));
        }
      }
    }
    if (const YAML::Node output = root["output"]) {
      if (!output.IsScalar()) return error(file_, output, "output", "expected a directory");
      sweep.output = output.Scalar();
    }
    if (absl::Status status = read_axes(root["axes"]); !status.ok()) return status;
    if (const YAML::Node name = root["name"]) {
      if (!name.IsScalar()) return error(file_, name, "name", "expected a template such as \"E{num_experts}-K{top_k}\"");
      name_template_ = name.Scalar();
      name_node_ = name;
    }
    return expand(std::move(sweep));
  }

  absl::Status read_axes(const YAML::Node& axes) {
    if (!axes) return absl::OkStatus();  // one run: the base (with set: and derive:)
    if (!axes.IsMap()) return error(file_, axes, "axes", "expected a map with grid: and/or zip:");
    for (const auto& item : axes) {
      const std::string kind = item.first.Scalar();
      if (kind != "grid" && kind != "zip") {
        return absl::InvalidArgumentError(
            absl::StrCat(at(file_, item.first), ": axes: unknown key '", kind, "'", suggestion(kind, {"grid", "zip"})));
      }
      if (!item.second.IsMap()) return error(file_, item.second, "axes." + kind, "expected a map of key: [values]");
      std::vector<Axis>& target = kind == "grid" ? grid_ : zip_;
      for (const auto& entry : item.second) {
        Axis axis{entry.first.Scalar(), {}, absl::StrCat("axes.", kind, ".", entry.first.Scalar())};
        const std::string where = at(file_, entry.first);
        if (!entry.second.IsSequence() || entry.second.size() == 0) {
          return error(file_, entry.second, axis.where, "expected a non-empty list of values");
        }
        for (const YAML::Node& value : entry.second) {
          if (is_derived(axis.key) && !positive_number(value)) {
            return error(file_, value, axis.where, absl::StrCat("expected positive numbers, got '", value_text(value), "'"));
          }
          axis.values.push_back(value);
        }
        for (const Axis& other : grid_) {
          if (other.key == axis.key) return error(file_, entry.first, axis.where, "also an axis in axes.grid");
        }
        for (const Axis& other : zip_) {
          if (other.key == axis.key) return error(file_, entry.first, axis.where, "also an axis in axes.zip");
        }
        if (!zip_.empty() && kind == "zip" && axis.values.size() != zip_.front().values.size()) {
          return error(file_, entry.second, axis.where,
                       absl::StrCat(axis.values.size(), " values, but ", zip_.front().where, " has ",
                                    zip_.front().values.size(), " (zipped lists have equal lengths)"));
        }
        axis_places_[axis.key] = where;
        target.push_back(std::move(axis));
      }
    }
    bool derived_axis = false;
    for (const std::vector<Axis>* axes_of : {&grid_, &zip_}) {
      for (const Axis& axis : *axes_of) derived_axis |= is_derived(axis.key);
    }
    const bool derives = derived_axis || !derive_.empty();
    for (const std::vector<Axis>* axes_of : {&grid_, &zip_}) {
      for (const Axis& axis : *axes_of) {
        if (derives && axis.key == "training.steps") {
          return absl::InvalidArgumentError(absl::StrCat(axis_places_[axis.key], ": ", axis.where,
                                                         ": steps are derived (compute_budget or tokens_per_active_parameter); "
                                                         "give one or the other"));
        }
      }
    }
    return absl::OkStatus();
  }

  // The config for a list of assignments; errors say where the sweep file wrote the culprit.
  absl::StatusOr<TrainConfig> resolve(const std::vector<Assignment>& assignments) const {
    std::vector<std::string> overrides;
    for (const Assignment& assignment : assignments) overrides.push_back(assignment.text);
    absl::StatusOr<TrainConfig> config =
        base_yaml_.empty() ? load_config(base_path_.string(), overrides)
                           : parse_config(base_yaml_, absl::StrCat(file_, ": base"), overrides, dir_.string());
    if (config.ok()) return config;
    const std::string message(config.status().message());
    for (auto it = assignments.rbegin(); it != assignments.rend(); ++it) {
      if (message.find("--set " + it->text) != std::string::npos) {
        if (message.starts_with(it->where)) return config.status();  // a command-line --set names itself
        return absl::Status(config.status().code(), absl::StrCat(it->where, ": ", message));
      }
    }
    return absl::Status(config.status().code(), absl::StrCat(file_, ": ", message));
  }

  absl::StatusOr<Sweep> expand(Sweep sweep) {
    // The grid's product (first axis slowest), each point with every zipped position.
    std::vector<std::vector<std::pair<const Axis*, size_t>>> points = {{}};
    for (const Axis& axis : grid_) {
      std::vector<std::vector<std::pair<const Axis*, size_t>>> next;
      for (const auto& point : points) {
        for (size_t i = 0; i < axis.values.size(); ++i) {
          next.push_back(point);
          next.back().push_back({&axis, i});
        }
      }
      points = std::move(next);
    }
    if (!zip_.empty()) {
      std::vector<std::vector<std::pair<const Axis*, size_t>>> next;
      for (const auto& point : points) {
        for (size_t i = 0; i < zip_.front().values.size(); ++i) {
          next.push_back(point);
          for (const Axis& axis : zip_) next.back().push_back({&axis, i});
        }
      }
      points = std::move(next);
    }
    std::map<std::string, size_t> names;
    for (size_t index = 0; index < points.size(); ++index) {
      SweepRun run;
      std::vector<Assignment> assignments = fixed_;
      std::map<std::string, YAML::Node> derive = derive_;
      for (const auto& [axis, i] : points[index]) {
        const YAML::Node& value = axis->values[i];
        run.axis_values.push_back({axis->key, value_text(value)});
        if (is_derived(axis->key)) {
          derive = {{axis->key, value}};
        } else {
          assignments.push_back({absl::StrCat(axis->key, "=", value_text(value)),
                                 absl::StrCat(at(file_, value), ": ", axis->where)});
        }
      }
      assignments.insert(assignments.end(), overrides_.begin(), overrides_.end());
      absl::StatusOr<TrainConfig> config = resolve(assignments);
      if (!config.ok()) return config.status();
      run.flops = count_flops(config->model, config->data.seq_length);
      run.tokens_per_step = config->training.global_batch_size * config->data.seq_length;
      if (!derive.empty()) {
        const auto& [key, node] = *derive.begin();
        const double amount = *positive_number(node);
        double tokens = 0;
        if (key == kComputeBudget) {
          run.compute_budget = amount;
          tokens = amount / run.flops.training_flops_per_token;
        } else {
          run.tokens_per_active_parameter = amount;
          tokens = amount * static_cast<double>(run.flops.active_parameters);
        }
        const int64_t steps = std::max<int64_t>(1, std::llround(tokens / static_cast<double>(run.tokens_per_step)));
        assignments.push_back({absl::StrCat("training.steps=", steps),
                               absl::StrCat(at(file_, node), ": ", key, " ", node.Scalar(), " (", steps, " steps)")});
        assignments.insert(assignments.end(), overrides_.begin(), overrides_.end());  // an explicit steps wins
        config = resolve(assignments);
        if (!config.ok()) return config.status();
      }
      run.config = *std::move(config);
      for (const Assignment& assignment : assignments) run.overrides.push_back(assignment.text);
      absl::StatusOr<std::string> name = run_name(run, index);
      if (!name.ok()) return name.status();
      run.name = *name;
      if (auto [it, inserted] = names.emplace(run.name, index); !inserted) {
        return absl::InvalidArgumentError(absl::StrCat(
            name_node_ ? at(file_, name_node_) : file_, ": name: runs ", it->second + 1, " and ", index + 1,
            " are both named '", run.name, "'; put more axes in the name template"));
      }
      sweep.runs.push_back(std::move(run));
    }
    return sweep;
  }

  absl::StatusOr<std::string> run_name(const SweepRun& run, size_t index) const {
    if (name_template_.empty()) {
      if (run.axis_values.empty()) return sanitize(fs::path(file_).stem().string());
      std::vector<std::string> parts;
      for (const auto& [key, value] : run.axis_values) parts.push_back(absl::StrCat(leaf(key), value));
      return sanitize(absl::StrJoin(parts, "-"));
    }
    std::string out;
    for (size_t i = 0; i < name_template_.size(); ++i) {
      if (name_template_[i] != '{') {
        out += name_template_[i];
        continue;
      }
      const size_t close = name_template_.find('}', i);
      if (close == std::string::npos) return error(file_, name_node_, "name", "a '{' without its '}'");
      const std::string field = name_template_.substr(i + 1, close - i - 1);
      std::optional<std::string> value;
      if (field == "index") value = absl::StrCat(index);
      for (const auto& [key, text] : run.axis_values) {
        if (key == field || leaf(key) == field) value = text;
      }
      if (!value) {
        std::vector<std::string> known = {"index"};
        for (const auto& [key, text] : run.axis_values) known.push_back(key);
        return error(file_, name_node_, "name", absl::StrCat("'{", field, "}' is not an axis", suggestion(field, known)));
      }
      out += *value;
      i = close;
    }
    return sanitize(out);
  }

  std::string file_;
  fs::path dir_;
  fs::path base_path_;
  std::string base_yaml_;
  std::vector<Assignment> fixed_;
  std::vector<Assignment> overrides_;  // from the command line, applied last
  std::map<std::string, YAML::Node> derive_;
  std::vector<Axis> grid_, zip_;
  std::map<std::string, std::string> axis_places_;
  std::string name_template_;
  YAML::Node name_node_;
};

// "1.23M", "456k": counts for people.
std::string human(double value) {
  const char* units[] = {"", "k", "M", "G", "T", "P"};
  int unit = 0;
  while (std::fabs(value) >= 1000 && unit < 5) {
    value /= 1000;
    ++unit;
  }
  return absl::StrFormat(value >= 100 || unit == 0 ? "%.0f%s" : "%.3g%s", value, units[unit]);
}

std::string duration(double seconds) {
  if (!(seconds > 0)) return "?";
  const int64_t s = std::llround(seconds);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

// Relative paths in a config mean "from the current directory"; a run's config.yaml is read
// from its own folder, so they become absolute.
TrainConfig with_absolute_paths(TrainConfig config, const fs::path& output) {
  auto absolute = [](std::string& path) {
    if (!path.empty()) path = fs::absolute(path).lexically_normal().string();
  };
  absolute(config.data.tokenizer);
  absolute(config.data.cache_dir);
  absolute(config.checkpoint.load);
  for (DataSource& source : config.data.sources) absolute(source.prefix);
  config.training.output_dir = fs::absolute(output).lexically_normal().string();
  return config;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

absl::Status write_text(const fs::path& path, const std::string& text) {
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary);
    out << text;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", temporary.string()));
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) return absl::InternalError(absl::StrCat("cannot write ", path.string(), ": ", error.message()));
  return absl::OkStatus();
}

nlohmann::json run_json(const Sweep& sweep, const SweepRun& run) {
  nlohmann::json axes = nlohmann::json::object();
  for (const auto& [key, value] : run.axis_values) axes[key] = value;
  return {{"name", run.name},
          {"sweep", sweep.path},
          {"axes", axes},
          {"overrides", run.overrides},
          {"compute_budget", run.compute_budget},
          {"tokens_per_active_parameter", run.tokens_per_active_parameter},
          {"total_parameters", run.flops.total_parameters},
          {"active_parameters", run.flops.active_parameters},
          {"training_flops_per_token", run.flops.training_flops_per_token},
          {"steps", run.config.training.steps},
          {"tokens", run.tokens()},
          {"compute", run.compute()}};
}

std::atomic<int> stop_requested{0};
extern "C" void on_stop_signal(int signal) { stop_requested = signal; }

// Starts `argv` with stdout and stderr into `log`, stdin from /dev/null, and `environment`.
absl::StatusOr<pid_t> spawn(const std::vector<std::string>& argv, const fs::path& log,
                            const std::vector<std::string>& environment) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args, env;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  for (const std::string& entry : environment) env.push_back(const_cast<char*>(entry.c_str()));
  env.push_back(nullptr);
  pid_t pid = 0;
  const int result = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (result != 0) return absl::InternalError(absl::StrCat("cannot start ", argv[0], ": ", std::strerror(result)));
  return pid;
}

// Variables that make a process part of a running MPI job (set when this process initialized
// MPI, e.g. as a singleton); a run is a job of its own, and mpirun refuses to start under them.
// The user's own settings (OMPI_MCA_btl and the like) stay.
bool belongs_to_running_job(const std::string& entry) {
  for (const char* prefix : {"PMIX_", "ORTE_", "OMPI_MCA_ess", "OMPI_MCA_orte_", "OMPI_MCA_pmix", "OMPI_APP_CTX_",
                             "OMPI_COMM_WORLD_", "OMPI_UNIVERSE_SIZE=", "OMPI_FILE_LOCATION=", "OMPI_FIRST_RANKS=",
                             "OMPI_NUM_APP_CTX="}) {
    if (entry.starts_with(prefix)) return true;
  }
  return false;
}

// The environment of a run: ours, with OMP_NUM_THREADS set, and mpirun's permission to run as
// root when we are root.
std::vector<std::string> child_environment(int threads, bool mpi) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    if (text.starts_with("OMP_NUM_THREADS=") || belongs_to_running_job(text)) continue;
    if (mpi && (text.starts_with("OMPI_ALLOW_RUN_AS_ROOT=") || text.starts_with("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="))) continue;
    environment.push_back(text);
  }
  environment.push_back(absl::StrCat("OMP_NUM_THREADS=", threads));
  if (mpi && geteuid() == 0) {
    environment.push_back("OMPI_ALLOW_RUN_AS_ROOT=1");
    environment.push_back("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1");
  }
  return environment;
}

std::optional<double> json_number(const nlohmann::json& object, const char* key) {
  if (!object.contains(key) || !object[key].is_number()) return std::nullopt;
  return object[key].get<double>();
}

// The report row of the run in `run_dir` (named relative to `root`); nullopt, with a warning,
// when its config no longer loads.
std::optional<ReportRow> read_run(const fs::path& root, const fs::path& run_dir) {
  absl::StatusOr<TrainConfig> config = load_config((run_dir / "config.yaml").string());
  if (!config.ok()) {
    std::fprintf(stderr, "sweep report: skipping %s: %s\n", run_dir.c_str(), std::string(config.status().message()).c_str());
    return std::nullopt;
  }
  ReportRow row;
  const fs::path relative = run_dir == root ? run_dir.filename() : fs::relative(run_dir, root);
  row.name = relative.string();
  row.sweep = relative.parent_path().string();
  const MoeConfig& moe = config->model.moe;
  const bool dense = moe.num_experts == 0;
  row.num_experts = moe.num_experts;
  row.top_k = dense ? 0 : moe.top_k;
  row.expert_ffn_size = dense ? 0 : moe.expert_ffn_size;
  row.shared_experts = dense ? 0 : moe.num_shared_experts;
  row.hidden_size = config->model.hidden_size;
  row.num_layers = config->model.num_layers;
  row.granularity = dense ? 0 : 2.0 * static_cast<double>(config->model.hidden_size) / static_cast<double>(moe.expert_ffn_size);
  row.activation_ratio = dense ? 1 : static_cast<double>(moe.top_k) / static_cast<double>(moe.num_experts);
  row.family = dense ? "dense" : absl::StrCat("E", row.num_experts, "-K", row.top_k, "-F", row.expert_ffn_size, "-S", row.shared_experts);
  const FlopCount flops = count_flops(config->model, config->data.seq_length);
  row.total_parameters = flops.total_parameters;
  row.active_parameters = flops.active_parameters;
  row.flops_per_token = flops.training_flops_per_token;
  row.steps = config->training.steps;
  row.tokens = static_cast<double>(row.steps) * static_cast<double>(config->training.global_batch_size * config->data.seq_length);
  row.compute = row.flops_per_token * row.tokens;
  const nlohmann::json manifest = nlohmann::json::parse(read_text(run_dir / "sweep_run.json"), nullptr, false);
  if (manifest.is_object()) row.compute_budget = json_number(manifest, "compute_budget").value_or(0);
  const nlohmann::json result = nlohmann::json::parse(read_text(run_dir / "result.json"), nullptr, false);
  if (result.is_object()) {
    const std::optional<double> valid = json_number(result, "valid_lm_loss");
    row.finished = valid.has_value();
    row.valid_loss = valid.value_or(0);
    row.train_loss = json_number(result, "train_lm_loss").value_or(0);
    row.tokens_per_second = json_number(result, "tokens_per_second").value_or(0);
  }
  return row;
}

}  // namespace

absl::StatusOr<Sweep> parse_sweep(const std::string& yaml, const std::string& name, const std::string& base_dir,
                                  const std::vector<std::string>& overrides) {
  return SweepParser(name, base_dir.empty() ? fs::path(".") : fs::path(base_dir), overrides).parse(yaml);
}

absl::StatusOr<Sweep> load_sweep(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read sweep file '", path, "': ", std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  fs::path dir = fs::path(path).parent_path();
  return parse_sweep(text.str(), path, dir.empty() ? "." : dir.string(), overrides);
}

double TimeModel::seconds(const SweepRun& run) const {
  double seconds = 0;
  if (tokens_per_second > 0) seconds += run.tokens() / tokens_per_second;
  if (flops_per_second > 0) seconds += run.compute() / flops_per_second;
  return seconds;
}

TimeModel time_model(const Sweep& sweep, double flops_per_second) {
  TimeModel model;
  model.tokens_per_second = sweep.tokens_per_second;
  const std::string per_token =
      sweep.tokens_per_second > 0 ? absl::StrFormat(" + tokens / %.3g tokens/s (estimate.tokens_per_second)", sweep.tokens_per_second) : "";
  if (flops_per_second > 0) {
    model.flops_per_second = flops_per_second;
    model.source = absl::StrFormat("compute / %.3g FLOP/s (--flops-per-second)%s", flops_per_second, per_token);
  } else if (sweep.flops_per_second > 0) {
    model.flops_per_second = sweep.flops_per_second;
    model.source = absl::StrFormat("compute / %.3g FLOP/s (estimate.flops_per_second)%s", sweep.flops_per_second, per_token);
  } else if (!sweep.runs.empty() && sweep.runs.front().config.training.peak_flops > 0) {
    const double peak = sweep.runs.front().config.training.peak_flops;
    model.flops_per_second = peak * sweep.mfu;
    model.source = absl::StrFormat("compute / (training.peak_flops %.3g x assumed MFU %.2f, estimate.mfu)%s", peak,
                                   sweep.mfu, per_token);
  } else if (sweep.tokens_per_second > 0) {
    model.source = per_token.substr(3);
  } else {
    model.source = "no rate known: set estimate.flops_per_second in the sweep file, training.peak_flops, or --flops-per-second";
  }
  return model;
}

std::string describe_sweep(const Sweep& sweep, const TimeModel& time) {
  struct Row {
    std::vector<std::string> cells;
  };
  std::vector<std::string> header = {"run", "axes", "params", "active", "steps", "tokens", "compute", "est. time"};
  std::vector<Row> rows;
  double total_compute = 0, total_tokens = 0, total_seconds = 0;
  for (const SweepRun& run : sweep.runs) {
    std::vector<std::string> axes;
    for (const auto& [key, value] : run.axis_values) axes.push_back(absl::StrCat(leaf(key), "=", value));
    const double seconds = time.seconds(run);
    total_seconds += seconds;
    rows.push_back({{run.name, axes.empty() ? "-" : absl::StrJoin(axes, " "), human(run.flops.total_parameters),
                     human(run.flops.active_parameters), absl::StrCat(run.config.training.steps), human(run.tokens()),
                     absl::StrFormat("%.3g", run.compute()), duration(seconds)}});
    total_compute += run.compute();
    total_tokens += run.tokens();
  }
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < header.size(); ++c) widths[c] = header[c].size();
  for (const Row& row : rows) {
    for (size_t c = 0; c < header.size(); ++c) widths[c] = std::max(widths[c], row.cells[c].size());
  }
  std::string out = absl::StrFormat("sweep %s: %d runs\n", sweep.path, sweep.runs.size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < cells.size(); ++c) {
      const bool left = c < 2;
      const std::string pad(widths[c] - cells[c].size(), ' ');
      absl::StrAppend(&text, c ? "  " : "", left ? cells[c] + pad : pad + cells[c]);
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return text + "\n";
  };
  absl::StrAppend(&out, line(header));
  for (const Row& row : rows) absl::StrAppend(&out, line(row.cells));
  absl::StrAppend(&out, absl::StrFormat("total: %s tokens, %.3g FLOPs, estimated %s one run at a time\n",
                                        human(total_tokens), total_compute,
                                        duration(total_seconds)));
  absl::StrAppend(&out, "time estimate per run: ", time.source, "\n");
  return out;
}

absl::StatusOr<SweepOutcome> execute_sweep(const Sweep& sweep, const SweepExecution& execution) {
  if (execution.jobs < 1 || execution.ranks < 1) return absl::InvalidArgumentError("--jobs and --ranks must be at least 1");
  const fs::path output = execution.output_dir;
  std::error_code fs_error;
  fs::create_directories(output, fs_error);
  if (fs_error) return absl::InternalError(absl::StrCat("cannot create ", output.string(), ": ", fs_error.message()));

  SweepOutcome outcome;
  nlohmann::json manifest = {{"sweep", sweep.path}, {"runs", nlohmann::json::array()}};
  struct Pending {
    const SweepRun* run;
    fs::path dir;
    bool resume;
  };
  std::vector<Pending> queue;
  for (const SweepRun& run : sweep.runs) {
    manifest["runs"].push_back(run_json(sweep, run));
    const fs::path dir = output / run.name;
    const std::string yaml = config_to_yaml(with_absolute_paths(run.config, dir));
    const fs::path config_path = dir / "config.yaml";
    if (fs::exists(config_path) && read_text(config_path) != yaml) {
      outcome.failures.push_back(absl::StrCat(run.name, ": ", config_path.string(),
                                              " differs from the sweep's config for this run (the sweep file changed?); "
                                              "move the directory away or use another --output"));
      continue;
    }
    fs::create_directories(dir, fs_error);
    if (fs_error) return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", fs_error.message()));
    if (!fs::exists(config_path)) {  // an equal one stays untouched
      if (absl::Status status = write_text(config_path, yaml); !status.ok()) return status;
    }
    if (absl::Status status = write_text(dir / "sweep_run.json", run_json(sweep, run).dump(2) + "\n"); !status.ok()) return status;
    if (fs::exists(dir / "result.json")) {
      ++outcome.skipped;
      if (execution.verbose) std::printf("sweep: %s finished before, skipped\n", run.name.c_str());
      continue;
    }
    queue.push_back({&run, dir, fs::exists(dir / "checkpoints" / "latest")});
  }
  if (absl::Status status = write_text(output / "sweep.json", manifest.dump(2) + "\n"); !status.ok()) return status;
  if (execution.prepare_only) return outcome;

  std::string executable = execution.executable;
  if (executable.empty()) executable = fs::read_symlink("/proc/self/exe", fs_error).string();
  const char* threads_text = std::getenv("OMP_NUM_THREADS");
  int total_threads = 0;
  if (threads_text == nullptr || !absl::SimpleAtoi(threads_text, &total_threads) || total_threads < 1) {
    total_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  const int threads = std::max(1, total_threads / (execution.jobs * execution.ranks));
  const std::vector<std::string> environment = child_environment(threads, execution.ranks > 1);

  // SIGINT/SIGTERM reach the runs too (same process group): they checkpoint and stop; we stop
  // starting new ones and wait for them.
  stop_requested = 0;
  struct sigaction action = {}, old_int = {}, old_term = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  struct Running {
    const Pending* pending;
    std::chrono::steady_clock::time_point start;
  };
  std::map<pid_t, Running> running;
  size_t next = 0;
  const size_t total = queue.size();
  size_t done = 0;
  absl::Status fatal;
  while ((next < queue.size() && stop_requested == 0) || !running.empty()) {
    while (next < queue.size() && stop_requested == 0 && running.size() < static_cast<size_t>(execution.jobs)) {
      const Pending& pending = queue[next++];
      std::vector<std::string> argv;
      if (execution.ranks > 1) {
        argv = execution.mpirun;
        argv.insert(argv.end(), {"-np", absl::StrCat(execution.ranks)});
      }
      argv.insert(argv.end(), {executable, "train", "--config", (pending.dir / "config.yaml").string()});
      if (pending.resume) argv.push_back("--resume");
      const fs::path log = pending.dir / "train.log";
      {
        std::ofstream(log, std::ios::app) << "sweep: " << absl::StrJoin(argv, " ") << " (OMP_NUM_THREADS=" << threads << ")\n";
      }
      absl::StatusOr<pid_t> pid = spawn(argv, log, environment);
      if (!pid.ok()) {
        fatal = pid.status();
        next = queue.size();
        break;
      }
      if (pending.resume) ++outcome.resumed;
      running[*pid] = {&pending, std::chrono::steady_clock::now()};
      if (execution.verbose) {
        std::printf("sweep: started %s%s (%zu of %zu; log %s)\n", pending.run->name.c_str(),
                    pending.resume ? ", resuming" : "", next, total, log.c_str());
        std::fflush(stdout);
      }
    }
    if (running.empty()) break;
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      fatal = absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
      break;
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const Pending& pending = *it->second.pending;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second.start).count();
    running.erase(it);
    ++done;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    const fs::path result_path = pending.dir / "result.json";
    if (code == 0 && fs::exists(result_path)) {
      ++outcome.finished;
      nlohmann::json result = nlohmann::json::parse(read_text(result_path), nullptr, false);
      const std::optional<double> loss = result.is_object() ? json_number(result, "valid_lm_loss") : std::nullopt;
      if (execution.verbose) {
        std::printf("sweep: finished %s in %s, valid loss %s (%zu of %zu done)\n", pending.run->name.c_str(),
                    duration(seconds).c_str(), loss ? absl::StrFormat("%.4f", *loss).c_str() : "-", done, total);
      }
    } else {
      outcome.failures.push_back(absl::StrCat(pending.run->name, ": ",
                                              code == 0 ? "stopped before the end" : absl::StrCat("exit code ", code),
                                              ", log ", (pending.dir / "train.log").string()));
      if (execution.verbose) std::printf("sweep: %s\n", outcome.failures.back().c_str());
    }
    std::fflush(stdout);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (!fatal.ok()) return fatal;
  if (stop_requested != 0) {
    return absl::CancelledError(absl::StrCat("stopped by signal ", stop_requested.load(), " after ", done, " of ", total,
                                             " runs; run the same command again to resume"));
  }
  return outcome;
}

absl::StatusOr<std::vector<ReportRow>> collect_runs(const std::string& dir) {
  fs::path root = fs::path(dir).lexically_normal();
  if (root.filename().empty()) root = root.parent_path();  // "runs/sweep/" names the folder "sweep"
  if (!fs::is_directory(root)) return absl::NotFoundError(absl::StrCat("no sweep directory '", dir, "'"));
  std::vector<ReportRow> rows;
  if (fs::exists(root / "config.yaml")) {  // one run's folder
    if (std::optional<ReportRow> row = read_run(root, root)) rows.push_back(*std::move(row));
    return rows;
  }
  std::error_code fs_error;
  for (auto it = fs::recursive_directory_iterator(root, fs_error); it != fs::recursive_directory_iterator();
       it.increment(fs_error)) {
    if (fs_error) return absl::InternalError(absl::StrCat("reading ", dir, ": ", fs_error.message()));
    if (!it->is_directory()) continue;
    if (it->path().filename() == "report" || fs::exists(it->path() / "config.yaml")) {
      it.disable_recursion_pending();  // a run's checkpoints hold config files too
    }
    if (!fs::exists(it->path() / "config.yaml")) continue;
    if (std::optional<ReportRow> row = read_run(root, it->path())) rows.push_back(*std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const ReportRow& a, const ReportRow& b) { return a.name < b.name; });
  return rows;
}

absl::StatusOr<std::string> write_run_tables(const std::string& dir, const std::vector<ReportRow>& rows) {
  const fs::path report = fs::path(dir) / "report";
  std::error_code fs_error;
  fs::create_directories(report, fs_error);
  if (fs_error) return absl::InternalError(absl::StrCat("cannot create ", report.string(), ": ", fs_error.message()));
  std::string csv =
      "name,sweep,family,num_experts,top_k,expert_ffn_size,shared_experts,hidden_size,num_layers,granularity,"
      "activation_ratio,total_parameters,active_parameters,flops_per_token,compute_budget,steps,tokens,compute,"
      "finished,valid_loss,train_loss,tokens_per_second\n";
  std::string md =
      "| run | E | K | granularity | shared | params | active | compute (FLOPs) | tokens | valid loss |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const ReportRow& row : rows) {
    absl::StrAppend(&csv, absl::StrFormat("%s,%s,%s,%d,%d,%d,%d,%d,%d,%.6g,%.6g,%d,%d,%.6g,%.6g,%d,%.6g,%.6g,%d,",
                                          row.name, row.sweep, row.family, row.num_experts, row.top_k,
                                          row.expert_ffn_size, row.shared_experts, row.hidden_size, row.num_layers,
                                          row.granularity, row.activation_ratio, row.total_parameters,
                                          row.active_parameters, row.flops_per_token, row.compute_budget, row.steps,
                                          row.tokens, row.compute, row.finished ? 1 : 0));
    absl::StrAppend(&csv, row.finished ? absl::StrFormat("%.6f,%.6f,%.1f\n", row.valid_loss, row.train_loss, row.tokens_per_second)
                                       : std::string(",,\n"));
    absl::StrAppend(&md, absl::StrFormat("| %s | %s | %s | %s | %d | %s | %s | %.3g | %s | %s |\n", row.name,
                                         row.num_experts ? absl::StrCat(row.num_experts) : "dense",
                                         row.num_experts ? absl::StrCat(row.top_k) : "-",
                                         row.num_experts ? absl::StrFormat("%.3g", row.granularity) : "-",
                                         row.shared_experts, human(row.total_parameters), human(row.active_parameters),
                                         row.compute, human(row.tokens),
                                         row.finished ? absl::StrFormat("%.4f", row.valid_loss) : "(not finished)"));
  }
  if (absl::Status status = write_text(report / "runs.csv", csv); !status.ok()) return status;
  if (absl::Status status = write_text(report / "runs.md", md); !status.ok()) return status;
  return md;
}

}  // namespace sy
