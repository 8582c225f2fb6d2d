// Training checkpoints: the step directory's files, the manifest (launch/proto/checkpoint.proto),
// and the write order that keeps the previous checkpoint loadable until the new one is complete:
// files fsynced in root/.step_N.tmp-<pid>, the directory fsynced and renamed, root/latest
// replaced (temp + fsync + rename), then old steps and leftovers of killed saves removed.
#include "launch/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/check.h"
#include "core/io/safetensors.h"
#include "launch/proto/checkpoint.pb.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFormatVersion = 1;
constexpr char kManifestFile[] = "manifest.pb";
constexpr char kModelFile[] = "model.safetensors";
constexpr char kOptimizerFile[] = "optimizer.safetensors";
constexpr char kConfigFile[] = "config.yaml";
constexpr char kLatestFile[] = "latest";
constexpr char kStepPrefix[] = "step_";
// Names a save works under, hidden and never named by `latest`; a save killed midway leaves
// them behind and the next save removes them.
constexpr char kTemporaryMark[] = ".tmp-";
constexpr char kRetiredMark[] = ".old-";

std::string step_directory_name(int64_t step) { return absl::StrFormat("%s%08d", kStepPrefix, step); }

// The step of a directory named step_<digits>, or -1.
int64_t parse_step_directory(const std::string& name) {
  if (name.rfind(kStepPrefix, 0) != 0 || name.size() == sizeof(kStepPrefix) - 1) return -1;
  int64_t step = 0;
  for (size_t i = sizeof(kStepPrefix) - 1; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

absl::Status errno_status(const std::string& path, const std::string& what) {
  return absl::PermissionDeniedError(absl::StrCat(path, ": ", what, ": ", std::strerror(errno)));
}

// fsync of a file or directory: its data, or its entries (renames into it), reach the disk.
absl::Status sync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return errno_status(path, "cannot open to fsync");
  int result = ::fsync(fd);
  int saved_errno = errno;
  ::close(fd);
  errno = saved_errno;
  if (result != 0) return errno_status(path, "fsync failed");
  return absl::OkStatus();
}

absl::Status write_file_synced(const std::string& path, const std::string& contents) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_status(path, "cannot open for writing");
  size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int saved_errno = errno;
      ::close(fd);
      errno = saved_errno;
      return errno_status(path, "write failed (disk full?)");
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int saved_errno = errno;
    ::close(fd);
    errno = saved_errno;
    return errno_status(path, "fsync failed");
  }
  if (::close(fd) != 0) return errno_status(path, "close failed");
  return absl::OkStatus();
}

absl::StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return contents.str();
}

absl::Status rename_path(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) return errno_status(from, absl::StrCat("cannot rename to ", to));
  return absl::OkStatus();
}

// Puts the complete new step directory `fresh` at `target`, which exists. With an atomic
// exchange where the filesystem has one; else the old one is renamed away first, so for a moment
// `target` is missing. The old directory ends at `fresh`'s name for the caller to delete.
absl::Status replace_directory(const std::string& fresh, const std::string& target, const std::string& retired) {
  if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    return rename_path(fresh, retired);
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
    return errno_status(fresh, absl::StrCat("cannot exchange with ", target));
  }
  if (absl::Status status = rename_path(target, retired); !status.ok()) return status;
  absl::Status status = rename_path(fresh, target);
  if (!status.ok()) (void)rename_path(retired, target);  // put the old one back
  return status;
}

checkpoint::TensorEntry* add_tensor_entry(const std::string& name, const Tensor& tensor, const std::string& file,
                                          google::protobuf::RepeatedPtrField<checkpoint::TensorEntry>* entries) {
  checkpoint::TensorEntry* entry = entries->Add();
  entry->set_name(name);
  entry->set_dtype(safetensors_dtype(tensor.dtype()));
  checkpoint::Shard* shard = entry->add_shards();
  shard->set_file(file);
  for (int64_t size : tensor.shape()) {
    entry->add_shape(size);
    shard->add_offsets(0);
    shard->add_sizes(size);
  }
  return entry;
}

// Writes `state` as `file` in `directory`, fsynced, and lists its tensors in `entries`.
absl::Status write_tensors(const std::string& directory, const std::string& file, const StateDict& state,
                           google::protobuf::RepeatedPtrField<checkpoint::TensorEntry>* entries) {
  std::vector<std::pair<std::string, Tensor>> tensors(state.begin(), state.end());
  for (const auto& [name, tensor] : tensors) add_tensor_entry(name, tensor, file, entries);
  const std::string path = (fs::path(directory) / file).string();
  if (absl::Status status = write_safetensors(path, tensors, {{"format", "pt"}}); !status.ok()) return status;
  return sync_path(path, /*directory=*/false);
}

// Removes what killed saves left behind (hidden .step_* directories, latest.tmp-* files).
void remove_leftovers(const std::string& root) {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    const bool leftover_step = name.rfind(".step_", 0) == 0 &&
                               (name.find(kTemporaryMark) != std::string::npos ||
                                name.find(kRetiredMark) != std::string::npos);
    const bool leftover_latest = name.rfind(absl::StrCat(kLatestFile, kTemporaryMark), 0) == 0;
    if (leftover_step || leftover_latest) fs::remove_all(entry.path(), error);
  }
}

// Deletes the oldest step directories until `keep_last_n` remain, never the one just saved.
// Each is renamed to a hidden name first, so a deletion cut short never looks like a checkpoint.
absl::Status remove_old_steps(const std::string& root, int64_t keep_last_n, const std::string& saved) {
  if (keep_last_n <= 0) return absl::OkStatus();
  std::vector<std::pair<int64_t, std::string>> steps;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    const int64_t step = parse_step_directory(name);
    if (step >= 0 && name != saved && entry.is_directory()) steps.emplace_back(step, name);
  }
  if (error) return absl::PermissionDeniedError(absl::StrCat(root, ": cannot list: ", error.message()));
  std::sort(steps.begin(), steps.end());
  const int64_t excess = static_cast<int64_t>(steps.size()) + 1 - keep_last_n;
  for (int64_t i = 0; i < excess; ++i) {
    const std::string retired = (fs::path(root) / absl::StrCat(".", steps[i].second, kRetiredMark, getpid())).string();
    if (absl::Status status = rename_path((fs::path(root) / steps[i].second).string(), retired); !status.ok()) {
      return status;
    }
    fs::remove_all(retired, error);
  }
  return absl::OkStatus();
}

absl::StatusOr<checkpoint::Manifest> read_manifest(const std::string& directory) {
  const std::string path = (fs::path(directory) / kManifestFile).string();
  if (!fs::exists(path)) {
    return absl::NotFoundError(absl::StrCat(path, ": missing (not a checkpoint step directory, or its save did not finish)"));
  }
  absl::StatusOr<std::string> bytes = read_file(path);
  if (!bytes.ok()) return bytes.status();
  checkpoint::Manifest manifest;
  if (!manifest.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid checkpoint manifest (damaged file?)"));
  }
  if (manifest.format_version() != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": checkpoint format version ", manifest.format_version(),
                                                      ", this Switchyard reads version ", kFormatVersion));
  }
  return manifest;
}

// Every file the manifest lists exists with the size it was written with.
absl::Status check_files(const std::string& directory, const checkpoint::Manifest& manifest) {
  for (const checkpoint::FileEntry& file : manifest.files()) {
    const std::string path = (fs::path(directory) / file.name()).string();
    std::error_code error;
    const uintmax_t size = fs::file_size(path, error);
    if (error) return absl::NotFoundError(absl::StrCat(path, ": missing from the checkpoint (the manifest lists it)"));
    if (size != file.size()) {
      return absl::DataLossError(absl::StrCat(path, ": has ", size, " bytes, the manifest says ", file.size(),
                                              " (truncated or damaged)"));
    }
  }
  return absl::OkStatus();
}

// The first few items (a model has thousands of tensors; the first ones tell what is wrong).
std::string first_few(const std::vector<std::string>& items, const char* separator = ", ") {
  constexpr size_t kShown = 5;
  std::vector<std::string> shown(items.begin(), items.begin() + std::min(items.size(), kShown));
  std::string text = absl::StrJoin(shown, separator);
  if (items.size() > kShown) absl::StrAppend(&text, separator, "and ", items.size() - kShown, " more");
  return text;
}

Shape entry_shape(const checkpoint::TensorEntry& entry) { return Shape(entry.shape().begin(), entry.shape().end()); }

// A tensor saved whole by one rank: this version does not reshard yet.
absl::Status check_whole_tensor(const std::string& manifest_path, const checkpoint::TensorEntry& entry,
                                const std::set<std::string>& files) {
  const Shape shape = entry_shape(entry);
  if (entry.shards_size() != 1 || Shape(entry.shards(0).sizes().begin(), entry.shards(0).sizes().end()) != shape ||
      std::any_of(entry.shards(0).offsets().begin(), entry.shards(0).offsets().end(),
                  [](int64_t offset) { return offset != 0; })) {
    return absl::UnimplementedError(absl::StrCat(manifest_path, ": tensor ", entry.name(),
                                                 " is stored in shards; loading a sharded checkpoint is not supported yet"));
  }
  if (!files.count(entry.shards(0).file())) {
    return absl::DataLossError(absl::StrCat(manifest_path, ": tensor ", entry.name(), " is in ", entry.shards(0).file(),
                                            ", which the manifest does not list"));
  }
  return absl::OkStatus();
}

// The manifest's model tensors against the model's: names, shapes and kinds of dtype (float
// precisions convert on load, as Module::load_state_dict does; integers never do).
absl::Status check_model_tensors(const std::string& directory, const checkpoint::Manifest& manifest,
                                 const StateDict& expected) {
  std::vector<std::string> mismatches, missing, unexpected;
  std::set<std::string> seen;
  for (const checkpoint::TensorEntry& entry : manifest.model_tensors()) {
    seen.insert(entry.name());
    auto found = expected.find(entry.name());
    if (found == expected.end()) {
      unexpected.push_back(entry.name());
      continue;
    }
    const Shape shape = entry_shape(entry);
    if (shape != found->second.shape()) {
      mismatches.push_back(absl::StrCat("checkpoint tensor ", entry.name(), " has shape ", ShapeString(shape),
                                        ", the model expects ", ShapeString(found->second.shape())));
      continue;
    }
    absl::StatusOr<DType> dtype = dtype_from_safetensors(entry.dtype());
    if (!dtype.ok() || is_floating(*dtype) != is_floating(found->second.dtype())) {
      mismatches.push_back(absl::StrCat("checkpoint tensor ", entry.name(), " has dtype ", entry.dtype(),
                                        ", the model expects ", safetensors_dtype(found->second.dtype())));
    }
  }
  for (const auto& [name, tensor] : expected) {
    if (!seen.count(name)) missing.push_back(absl::StrCat(name, " ", ShapeString(tensor.shape())));
  }
  std::vector<std::string> problems;
  if (!missing.empty()) {
    problems.push_back(absl::StrCat("the model has ", missing.size(), " tensors the checkpoint lacks (",
                                    first_few(missing), ")"));
  }
  if (!unexpected.empty()) {
    problems.push_back(absl::StrCat("the checkpoint has ", unexpected.size(), " tensors the model lacks (",
                                    first_few(unexpected), ")"));
  }
  if (!mismatches.empty()) problems.push_back(first_few(mismatches, "; "));
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(directory, " does not match the model: ", absl::StrJoin(problems, "; ")));
}

// Optimizer state "<state>.<parameter>" has its parameter's shape ("step" and other names are
// left to Optimizer::load_state_dict, which checks them before changing anything).
absl::Status check_optimizer_tensors(const std::string& directory, const checkpoint::Manifest& manifest,
                                     const Optimizer& optimizer) {
  std::map<std::string, Shape> parameter_shapes;
  for (const auto& [name, parameter] : optimizer.parameters()) parameter_shapes[name] = parameter.shape();
  std::vector<std::string> problems;
  for (const checkpoint::TensorEntry& entry : manifest.optimizer_tensors()) {
    const size_t dot = entry.name().find('.');
    if (dot == std::string::npos) continue;
    auto found = parameter_shapes.find(entry.name().substr(dot + 1));
    if (found != parameter_shapes.end() && found->second != entry_shape(entry)) {
      problems.push_back(absl::StrCat("checkpoint optimizer tensor ", entry.name(), " has shape ",
                                      ShapeString(entry_shape(entry)), ", the model expects ",
                                      ShapeString(found->second)));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(directory, " does not match the optimizer: ", first_few(problems, "; ")));
}

// Reads the tensors `entries` name from their file, checking each against the manifest.
absl::StatusOr<StateDict> read_tensors(const std::string& directory, const std::string& file,
                                       const google::protobuf::RepeatedPtrField<checkpoint::TensorEntry>& entries) {
  const std::string path = (fs::path(directory) / file).string();
  absl::StatusOr<SafetensorsFile> contents = read_safetensors(path);
  if (!contents.ok()) return contents.status();
  StateDict state;
  for (const auto& [name, tensor] : contents->tensors) state[name] = tensor;
  if (state.size() != static_cast<size_t>(entries.size())) {
    return absl::DataLossError(absl::StrCat(path, ": holds ", state.size(), " tensors, the manifest lists ",
                                            entries.size()));
  }
  for (const checkpoint::TensorEntry& entry : entries) {
    auto found = state.find(entry.name());
    if (found == state.end()) {
      return absl::DataLossError(absl::StrCat(path, ": lacks tensor ", entry.name(), ", which the manifest lists"));
    }
    if (found->second.shape() != entry_shape(entry) || safetensors_dtype(found->second.dtype()) != entry.dtype()) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", entry.name(), " is ",
                                              safetensors_dtype(found->second.dtype()), " ",
                                              ShapeString(found->second.shape()), ", the manifest says ", entry.dtype(),
                                              " ", ShapeString(entry_shape(entry))));
    }
  }
  return state;
}

}  // namespace

absl::Status save_checkpoint(const std::string& root, const Module& model, const Optimizer& optimizer,
                             const TrainState& state, const std::string& config_yaml, int64_t keep_last_n,
                             const CheckpointRank& rank) {
  SY_CHECK(rank.groups == nullptr || rank.groups->world->size() == 1, "save_checkpoint: sharded saving is not built yet");
  if (state.step < 0) return absl::InvalidArgumentError(absl::StrCat("checkpoint step must be >= 0, got ", state.step));
  std::error_code error;
  fs::create_directories(root, error);
  if (error) return absl::PermissionDeniedError(absl::StrCat(root, ": cannot create: ", error.message()));

  const std::string name = step_directory_name(state.step);
  const std::string target = (fs::path(root) / name).string();
  const std::string temporary = (fs::path(root) / absl::StrCat(".", name, kTemporaryMark, getpid())).string();
  fs::remove_all(temporary, error);
  if (!fs::create_directory(temporary, error) || error) {
    return absl::PermissionDeniedError(absl::StrCat(temporary, ": cannot create: ", error.message()));
  }
  auto write_all = [&]() -> absl::Status {
    checkpoint::Manifest manifest;
    manifest.set_format_version(kFormatVersion);
    manifest.set_step(state.step);
    manifest.set_consumed_samples(state.consumed_samples);
    manifest.set_rng_seed(state.rng.seed);
    manifest.set_rng_offset(state.rng.offset);
    manifest.set_wall_seconds(state.wall_seconds);
    // One process holds every tensor whole; the Distributed issue records its real layout here.
    checkpoint::RankLayout* layout = manifest.mutable_layout();
    layout->set_world_size(1);
    layout->set_tensor(1);
    layout->set_context(1);
    layout->set_data(1);
    layout->set_pipeline(1);
    layout->set_expert(1);
    layout->set_expert_tensor(1);

    absl::Status status = write_tensors(temporary, kModelFile, model.state_dict(), manifest.mutable_model_tensors());
    if (status.ok()) {
      status = write_tensors(temporary, kOptimizerFile, optimizer.state_dict(), manifest.mutable_optimizer_tensors());
    }
    if (status.ok()) status = write_file_synced((fs::path(temporary) / kConfigFile).string(), config_yaml);
    if (!status.ok()) return status;
    for (const char* file : {kModelFile, kOptimizerFile, kConfigFile}) {
      checkpoint::FileEntry* entry = manifest.add_files();
      entry->set_name(file);
      entry->set_size(fs::file_size(fs::path(temporary) / file, error));
      if (error) return absl::DataLossError(absl::StrCat(temporary, "/", file, ": ", error.message()));
    }
    // The manifest last: a step directory with a manifest is complete.
    status = write_file_synced((fs::path(temporary) / kManifestFile).string(), manifest.SerializeAsString());
    if (status.ok()) status = sync_path(temporary, /*directory=*/true);
    if (!status.ok()) return status;

    const std::string retired = (fs::path(root) / absl::StrCat(".", name, kRetiredMark, getpid())).string();
    if (fs::exists(target)) {
      status = replace_directory(temporary, target, retired);
    } else {
      status = rename_path(temporary, target);
    }
    if (status.ok()) status = sync_path(root, /*directory=*/true);
    if (!status.ok()) return status;
    fs::remove_all(retired, error);

    const std::string latest = (fs::path(root) / kLatestFile).string();
    const std::string latest_temporary = absl::StrCat(latest, kTemporaryMark, getpid());
    status = write_file_synced(latest_temporary, name + "\n");
    if (status.ok()) status = rename_path(latest_temporary, latest);
    if (status.ok()) status = sync_path(root, /*directory=*/true);
    return status;
  };
  absl::Status status = write_all();
  if (!status.ok()) {
    fs::remove_all(temporary, error);
    return status;
  }
  status = remove_old_steps(root, keep_last_n, name);
  remove_leftovers(root);
  return status;
}

absl::StatusOr<std::string> resolve_checkpoint(const std::string& path) {
  std::error_code error;
  if (!fs::exists(path, error)) return absl::NotFoundError(absl::StrCat(path, ": no such checkpoint directory"));
  if (fs::exists(fs::path(path) / kManifestFile, error)) return path;
  const std::string latest = (fs::path(path) / kLatestFile).string();
  if (!fs::exists(latest, error)) {
    return absl::NotFoundError(absl::StrCat(path, ": neither a checkpoint step directory (no ", kManifestFile,
                                            ") nor a checkpoint folder (no ", kLatestFile, " file)"));
  }
  absl::StatusOr<std::string> contents = read_file(latest);
  if (!contents.ok()) return contents.status();
  const std::string name(absl::StripAsciiWhitespace(*contents));
  if (parse_step_directory(name) < 0) {
    return absl::DataLossError(absl::StrCat(latest, ": expected a step directory name (step_<number>), found '",
                                            name, "'"));
  }
  const std::string directory = (fs::path(path) / name).string();
  if (!fs::exists(fs::path(directory) / kManifestFile, error)) {
    return absl::NotFoundError(absl::StrCat(latest, " names ", name, ", but ", directory, " has no ", kManifestFile));
  }
  return directory;
}

absl::StatusOr<std::string> read_checkpoint_config(const std::string& directory) {
  absl::StatusOr<checkpoint::Manifest> manifest = read_manifest(directory);
  if (!manifest.ok()) return manifest.status();
  if (absl::Status status = check_files(directory, *manifest); !status.ok()) return status;
  return read_file((fs::path(directory) / kConfigFile).string());
}

absl::StatusOr<TrainState> load_checkpoint(const std::string& directory, Module& model, Optimizer* optimizer,
                                           const CheckpointRank& rank) {
  SY_CHECK(rank.groups == nullptr || rank.groups->world->size() == 1, "load_checkpoint: sharded loading is not built yet");
  // Everything is read and checked before the model or the optimizer changes.
  absl::StatusOr<checkpoint::Manifest> manifest = read_manifest(directory);
  if (!manifest.ok()) return manifest.status();
  if (absl::Status status = check_files(directory, *manifest); !status.ok()) return status;
  const std::string manifest_path = (fs::path(directory) / kManifestFile).string();
  std::set<std::string> files;
  for (const checkpoint::FileEntry& file : manifest->files()) files.insert(file.name());
  for (const auto* entries : {&manifest->model_tensors(), &manifest->optimizer_tensors()}) {
    for (const checkpoint::TensorEntry& entry : *entries) {
      if (absl::Status status = check_whole_tensor(manifest_path, entry, files); !status.ok()) return status;
    }
  }
  if (absl::Status status = check_model_tensors(directory, *manifest, model.state_dict()); !status.ok()) {
    return status;
  }
  if (optimizer != nullptr) {
    if (absl::Status status = check_optimizer_tensors(directory, *manifest, *optimizer); !status.ok()) return status;
  }
  absl::StatusOr<StateDict> model_state = read_tensors(directory, kModelFile, manifest->model_tensors());
  if (!model_state.ok()) return model_state.status();
  StateDict optimizer_state;
  if (optimizer != nullptr) {
    absl::StatusOr<StateDict> read = read_tensors(directory, kOptimizerFile, manifest->optimizer_tensors());
    if (!read.ok()) return read.status();
    optimizer_state = std::move(*read);
  }

  // The optimizer first: its load changes nothing when it fails, and the model's checks above
  // are the ones Module::load_state_dict makes, so it cannot fail after the optimizer changed.
  if (optimizer != nullptr) {
    if (absl::Status status = optimizer->load_state_dict(optimizer_state); !status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(directory, "/", kOptimizerFile, " does not match the optimizer: ", status.message()));
    }
  }
  if (absl::Status status = model.load_state_dict(*model_state); !status.ok()) {
    return absl::InternalError(absl::StrCat(directory, "/", kModelFile, ": ", status.message()));
  }
  TrainState state;
  state.step = manifest->step();
  state.consumed_samples = manifest->consumed_samples();
  state.rng = {manifest->rng_seed(), manifest->rng_offset()};
  state.wall_seconds = manifest->wall_seconds();
  return state;
}

}  // namespace sy
