// Training checkpoints: the step directory's files, the manifest (launch/proto/checkpoint.proto),
// and the write order that keeps the previous checkpoint loadable until the new one is complete:
// files fsynced in root/.step_N.tmp-<pid>, the directory fsynced and renamed, root/latest
// replaced (temp + fsync + rename), then old steps and leftovers of killed saves removed.
// With several ranks each writes its blocks (model-rankNNNNN.safetensors, ...) and a fragment
// listing them into rank 0's temporary directory; rank 0 merges the fragments into the manifest
// and does the rest. Each phase ends with every rank agreeing on one status.
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
#include "launch/checkpoint_shards.h"
#include "launch/proto/checkpoint.pb.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFormatVersion = 1;
constexpr char kManifestFile[] = "manifest.pb";
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

Shape entry_shape(const checkpoint::TensorEntry& entry) { return Shape(entry.shape().begin(), entry.shape().end()); }

std::vector<TensorRegion> regions_of(const checkpoint::TensorEntry& entry) {
  std::vector<TensorRegion> regions;
  for (const checkpoint::Shard& shard : entry.shards()) {
    regions.push_back({std::vector<int64_t>(shard.offsets().begin(), shard.offsets().end()),
                       Shape(shard.sizes().begin(), shard.sizes().end())});
  }
  return regions;
}

// ---- Ranks: who writes what, and one status for all ----

// This process in a save or load: the world (null: one process) and what it writes.
struct Place {
  Communicator* world = nullptr;
  int rank = 0;
  int size = 1;
  bool writes_replicated = true;  // world rank 0
  bool writes_blocks = true;      // the first rank of its expert-data group: each block once
};

Place place_of(const CheckpointRank& rank) {
  Place place;
  if (rank.groups == nullptr) return place;
  place.world = rank.groups->world.get();
  place.rank = place.world->rank();
  place.size = place.world->size();
  place.writes_replicated = place.rank == 0;
  place.writes_blocks = rank.groups->expert_data == nullptr || rank.groups->expert_data->rank() == 0;
  return place;
}

// Every rank ends with the same status: OK when every rank's `local` is, else the code and
// message of the lowest failing rank, naming it. Collective over `world` (null: one process),
// so a rank that failed never leaves the others waiting in a later collective.
absl::Status agree(Communicator* world, const absl::Status& local) {
  if (world == nullptr || world->size() == 1) return local;
  const int64_t size = world->size();
  // The lowest failing rank has the highest value; -1 when none failed.
  Tensor flag = Tensor::from_vector<int64_t>({local.ok() ? -1 : size - 1 - world->rank()}, {1}, DType::kI64);
  world->all_reduce(flag, ReduceOp::kMax);
  const int64_t highest = flag.data<int64_t>()[0];
  if (highest < 0) return absl::OkStatus();
  const int failing = static_cast<int>(size - 1 - highest);
  const std::string message(local.message());
  Tensor header = Tensor::from_vector<int64_t>(
      {static_cast<int64_t>(local.code()), static_cast<int64_t>(message.size())}, {2}, DType::kI64);
  world->broadcast(header, failing);
  const int64_t code = header.data<int64_t>()[0], length = header.data<int64_t>()[1];
  std::string text = message;
  if (length > 0) {
    Tensor characters = Tensor::zeros({length}, DType::kI32);
    if (world->rank() == failing) {
      for (int64_t i = 0; i < length; ++i) characters.data<int32_t>()[i] = static_cast<unsigned char>(message[i]);
    }
    world->broadcast(characters, failing);
    text.assign(static_cast<size_t>(length), ' ');
    for (int64_t i = 0; i < length; ++i) text[i] = static_cast<char>(characters.data<int32_t>()[i]);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat("rank ", failing, " of ", size, ": ", text));
}

// Rank 0's `value` on every rank.
int64_t from_first_rank(Communicator* world, int64_t value) {
  if (world == nullptr || world->size() == 1) return value;
  Tensor tensor = Tensor::from_vector<int64_t>({value}, {1}, DType::kI64);
  world->broadcast(tensor, 0);
  return tensor.data<int64_t>()[0];
}

// The parameter an optimizer entry "<state>.<parameter>" belongs to ("" for "step").
std::string parameter_of(const std::string& optimizer_name) {
  const size_t dot = optimizer_name.find('.');
  return dot == std::string::npos ? std::string() : optimizer_name.substr(dot + 1);
}

const TensorBox* box_of(const CheckpointRank& rank, const std::string& name) {
  auto found = rank.shards.find(name);
  return found == rank.shards.end() ? nullptr : &found->second;
}

// Where a tensor this rank holds (of `local_shape`) sits in the global one.
struct Placement {
  Shape global_shape;
  TensorRegion region;
  bool sharded = false;
};

absl::StatusOr<Placement> place_tensor(const std::string& name, const Shape& local_shape, const TensorBox* box) {
  if (box == nullptr) return Placement{local_shape, whole_region(local_shape), false};
  bool fits = box->global_shape.size() == local_shape.size() && box->offsets.size() == local_shape.size();
  for (size_t d = 0; fits && d < local_shape.size(); ++d) {
    fits = box->offsets[d] >= 0 && box->offsets[d] + local_shape[d] <= box->global_shape[d];
  }
  if (!fits) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": this rank holds a block of shape ",
                                                   ShapeString(local_shape), " at offsets ", ShapeString(box->offsets),
                                                   ", which does not fit its global shape ",
                                                   ShapeString(box->global_shape)));
  }
  return Placement{box->global_shape, TensorRegion{box->offsets, local_shape}, true};
}

absl::Status check_shard_names(const CheckpointRank& rank, const StateDict& model_state) {
  for (const auto& [name, box] : rank.shards) {
    if (!model_state.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("the rank's shards name tensor ", name, ", which the model lacks"));
    }
  }
  return absl::OkStatus();
}

// ---- Saving ----

// Writes this rank's blocks of `state` (a tensor named n is placed by rank.shards[box_name(n)])
// as `file` in `directory`, fsynced, and lists them, with their boxes, in `entries`.
template <typename BoxName>
absl::Status write_rank_tensors(const std::string& directory, const std::string& file, const StateDict& state,
                                const CheckpointRank& rank, const Place& place, BoxName box_name,
                                google::protobuf::RepeatedPtrField<checkpoint::TensorEntry>* entries,
                                checkpoint::Manifest* fragment) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, tensor] : state) {
    absl::StatusOr<Placement> placed = place_tensor(name, tensor.shape(), box_of(rank, box_name(name)));
    if (!placed.ok()) return placed.status();
    if (!(placed->sharded ? place.writes_blocks : place.writes_replicated)) continue;
    checkpoint::TensorEntry* entry = entries->Add();
    entry->set_name(name);
    entry->set_dtype(safetensors_dtype(tensor.dtype()));
    for (int64_t size : placed->global_shape) entry->add_shape(size);
    checkpoint::Shard* shard = entry->add_shards();
    shard->set_file(file);
    for (int64_t offset : placed->region.offsets) shard->add_offsets(offset);
    for (int64_t size : placed->region.sizes) shard->add_sizes(size);
    tensors.emplace_back(name, tensor);
  }
  if (tensors.empty()) return absl::OkStatus();
  fragment->add_files()->set_name(file);
  const std::string path = (fs::path(directory) / file).string();
  if (absl::Status status = write_safetensors(path, tensors, {{"format", "pt"}}); !status.ok()) return status;
  return sync_path(path, /*directory=*/false);
}

std::string fragment_name(int rank) { return absl::StrFormat("fragment-rank%05d.pb", rank); }

// This rank's part of a save into `directory`: its model and optimizer blocks, listed in
// `fragment` (tensors with their boxes, and files). With several ranks each writes its own
// files, and every rank but 0 its fragment, for rank 0 to merge.
absl::Status write_rank_part(const std::string& directory, const Place& place, const CheckpointRank& rank,
                             const Module& model, const Optimizer& optimizer, checkpoint::Manifest* fragment) {
  const StateDict model_state = model.state_dict();
  if (absl::Status status = check_shard_names(rank, model_state); !status.ok()) return status;
  const std::string suffix = place.size == 1 ? "" : absl::StrFormat("-rank%05d", place.rank);
  absl::Status status = write_rank_tensors(
      directory, absl::StrCat("model", suffix, ".safetensors"), model_state, rank, place,
      [](const std::string& name) { return name; }, fragment->mutable_model_tensors(), fragment);
  if (!status.ok()) return status;
  status = write_rank_tensors(directory, absl::StrCat("optimizer", suffix, ".safetensors"), optimizer.state_dict(),
                              rank, place, parameter_of, fragment->mutable_optimizer_tensors(), fragment);
  // Rank 0 keeps its own fragment in memory.
  if (!status.ok() || place.rank == 0) return status;
  return write_file_synced((fs::path(directory) / fragment_name(place.rank)).string(), fragment->SerializeAsString());
}

// Rank 0: the ranks' fragments merged into `manifest`, one entry per tensor with every block,
// checked to agree on dtype and global shape and to tile the tensor exactly.
absl::Status merge_fragments(const std::vector<checkpoint::Manifest>& fragments, checkpoint::Manifest* manifest) {
  for (bool optimizer : {false, true}) {
    std::map<std::string, checkpoint::TensorEntry> merged;
    for (const checkpoint::Manifest& fragment : fragments) {
      for (const checkpoint::TensorEntry& entry : optimizer ? fragment.optimizer_tensors() : fragment.model_tensors()) {
        auto [found, fresh] = merged.try_emplace(entry.name(), entry);
        if (fresh) continue;
        if (found->second.dtype() != entry.dtype() || entry_shape(found->second) != entry_shape(entry)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "tensor ", entry.name(), " is ", found->second.dtype(), " ", ShapeString(entry_shape(found->second)),
              " in ", found->second.shards(0).file(), " but ", entry.dtype(), " ", ShapeString(entry_shape(entry)),
              " in ", entry.shards(0).file()));
        }
        *found->second.add_shards() = entry.shards(0);
      }
    }
    for (auto& [name, entry] : merged) {
      if (absl::Status status = check_tiling(name, entry_shape(entry), regions_of(entry)); !status.ok()) return status;
      *(optimizer ? manifest->add_optimizer_tensors() : manifest->add_model_tensors()) = std::move(entry);
    }
  }
  for (const checkpoint::Manifest& fragment : fragments) {
    for (const checkpoint::FileEntry& file : fragment.files()) manifest->add_files()->set_name(file.name());
  }
  return absl::OkStatus();
}

// ---- Loading ----

// The model's tensors as the checkpoint must hold them: global shape and dtype, by name.
struct Expected {
  Shape global_shape;
  DType dtype;
};

// The first few items (a model has thousands of tensors; the first ones tell what is wrong).
std::string first_few(const std::vector<std::string>& items, const char* separator = ", ") {
  constexpr size_t kShown = 5;
  std::vector<std::string> shown(items.begin(), items.begin() + std::min(items.size(), kShown));
  std::string text = absl::StrJoin(shown, separator);
  if (items.size() > kShown) absl::StrAppend(&text, separator, "and ", items.size() - kShown, " more");
  return text;
}

// The manifest's model tensors against the model's: names, global shapes and kinds of dtype
// (float precisions convert on load, as Module::load_state_dict does; integers never do).
absl::Status check_model_tensors(const std::string& directory, const checkpoint::Manifest& manifest,
                                 const std::map<std::string, Expected>& expected) {
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
    if (shape != found->second.global_shape) {
      mismatches.push_back(absl::StrCat("checkpoint tensor ", entry.name(), " has shape ", ShapeString(shape),
                                        ", the model expects ", ShapeString(found->second.global_shape)));
      continue;
    }
    absl::StatusOr<DType> dtype = dtype_from_safetensors(entry.dtype());
    if (!dtype.ok() || is_floating(*dtype) != is_floating(found->second.dtype)) {
      mismatches.push_back(absl::StrCat("checkpoint tensor ", entry.name(), " has dtype ", entry.dtype(),
                                        ", the model expects ", safetensors_dtype(found->second.dtype)));
    }
  }
  for (const auto& [name, tensor] : expected) {
    if (!seen.count(name)) missing.push_back(absl::StrCat(name, " ", ShapeString(tensor.global_shape)));
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

// The optimizer's entries against the manifest's: the same names, and "<state>.<parameter>"
// with its parameter's global shape. Checked here (Optimizer::load_state_dict checks the same)
// so that, with several ranks, no rank changes its optimizer while another refuses.
absl::Status check_optimizer_tensors(const std::string& directory, const checkpoint::Manifest& manifest,
                                     const Optimizer& optimizer, const CheckpointRank& rank) {
  std::map<std::string, Shape> parameter_shapes;
  for (const auto& [name, parameter] : optimizer.parameters()) {
    const TensorBox* box = box_of(rank, name);
    parameter_shapes[name] = box == nullptr ? parameter.shape() : box->global_shape;
  }
  std::vector<std::string> problems, missing, unexpected;
  const StateDict state = optimizer.state_dict();
  std::set<std::string> seen;
  for (const checkpoint::TensorEntry& entry : manifest.optimizer_tensors()) {
    seen.insert(entry.name());
    if (!state.count(entry.name())) unexpected.push_back(entry.name());
    auto found = parameter_shapes.find(parameter_of(entry.name()));
    if (found != parameter_shapes.end() && found->second != entry_shape(entry)) {
      problems.push_back(absl::StrCat("checkpoint optimizer tensor ", entry.name(), " has shape ",
                                      ShapeString(entry_shape(entry)), ", the model expects ",
                                      ShapeString(found->second)));
    }
  }
  for (const auto& [name, tensor] : state) {
    if (!seen.count(name)) missing.push_back(name);
  }
  if (!missing.empty()) problems.push_back(absl::StrCat("the checkpoint lacks ", first_few(missing)));
  if (!unexpected.empty()) problems.push_back(absl::StrCat("the optimizer has no ", first_few(unexpected)));
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(directory, " does not match the optimizer: ", first_few(problems, "; ")));
}

// The safetensors files of a step directory, each read once when a block in it is first
// needed and checked against the manifest (the number of tensors it holds; each block's
// dtype and shape).
class BlockFiles {
 public:
  BlockFiles(std::string directory, const checkpoint::Manifest& manifest) : directory_(std::move(directory)) {
    for (const auto* entries : {&manifest.model_tensors(), &manifest.optimizer_tensors()}) {
      for (const checkpoint::TensorEntry& entry : *entries) {
        for (const checkpoint::Shard& shard : entry.shards()) ++listed_[shard.file()];
      }
    }
  }

  absl::StatusOr<Tensor> block(const checkpoint::TensorEntry& entry, int shard_index) {
    const checkpoint::Shard& shard = entry.shards(shard_index);
    const std::string path = (fs::path(directory_) / shard.file()).string();
    auto file = files_.find(shard.file());
    if (file == files_.end()) {
      absl::StatusOr<SafetensorsFile> contents = read_safetensors(path);
      if (!contents.ok()) return contents.status();
      std::map<std::string, Tensor> tensors(contents->tensors.begin(), contents->tensors.end());
      if (tensors.size() != static_cast<size_t>(listed_[shard.file()])) {
        return absl::DataLossError(absl::StrCat(path, ": holds ", tensors.size(), " tensors, the manifest lists ",
                                                listed_[shard.file()]));
      }
      file = files_.emplace(shard.file(), std::move(tensors)).first;
    }
    auto found = file->second.find(entry.name());
    if (found == file->second.end()) {
      return absl::DataLossError(absl::StrCat(path, ": lacks tensor ", entry.name(), ", which the manifest lists"));
    }
    const Shape sizes(shard.sizes().begin(), shard.sizes().end());
    if (found->second.shape() != sizes || safetensors_dtype(found->second.dtype()) != entry.dtype()) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", entry.name(), " is ",
                                              safetensors_dtype(found->second.dtype()), " ",
                                              ShapeString(found->second.shape()), ", the manifest says ", entry.dtype(),
                                              " ", ShapeString(sizes)));
    }
    return found->second;
  }

 private:
  std::string directory_;
  std::map<std::string, int64_t> listed_;
  std::map<std::string, std::map<std::string, Tensor>> files_;
};

// The `wanted` box of a manifest tensor, from whichever of its blocks overlap it.
absl::StatusOr<Tensor> assemble_entry(const std::string& directory, const checkpoint::TensorEntry& entry,
                                      const TensorRegion& wanted, BlockFiles& files) {
  absl::StatusOr<DType> dtype = dtype_from_safetensors(entry.dtype());
  if (!dtype.ok()) {
    return absl::DataLossError(absl::StrCat(directory, ": tensor ", entry.name(), ": ", dtype.status().message()));
  }
  absl::StatusOr<Tensor> assembled = assemble_region(
      entry.name(), entry_shape(entry), *dtype, regions_of(entry),
      [&](size_t shard) { return files.block(entry, static_cast<int>(shard)); }, wanted);
  if (!assembled.ok() && assembled.status().message().rfind("tensor ", 0) == 0) {
    return absl::Status(assembled.status().code(), absl::StrCat(directory, ": ", assembled.status().message()));
  }
  return assembled;
}

// Everything a load changes, read and checked first.
struct LoadedCheckpoint {
  StateDict model;
  StateDict optimizer;
  TrainState state;
};

absl::StatusOr<LoadedCheckpoint> read_for_rank(const std::string& directory, const Module& model,
                                               const Optimizer* optimizer, const CheckpointRank& rank) {
  absl::StatusOr<checkpoint::Manifest> manifest = read_manifest(directory);
  if (!manifest.ok()) return manifest.status();
  if (absl::Status status = check_files(directory, *manifest); !status.ok()) return status;
  const std::string manifest_path = (fs::path(directory) / kManifestFile).string();
  std::set<std::string> files;
  for (const checkpoint::FileEntry& file : manifest->files()) files.insert(file.name());
  for (const auto* entries : {&manifest->model_tensors(), &manifest->optimizer_tensors()}) {
    for (const checkpoint::TensorEntry& entry : *entries) {
      for (const checkpoint::Shard& shard : entry.shards()) {
        if (!files.count(shard.file())) {
          return absl::DataLossError(absl::StrCat(manifest_path, ": tensor ", entry.name(), " is in ", shard.file(),
                                                  ", which the manifest does not list"));
        }
      }
    }
  }

  const StateDict model_state = model.state_dict();
  if (absl::Status status = check_shard_names(rank, model_state); !status.ok()) return status;
  std::map<std::string, Placement> placements;
  std::map<std::string, Expected> expected;
  for (const auto& [name, tensor] : model_state) {
    absl::StatusOr<Placement> placed = place_tensor(name, tensor.shape(), box_of(rank, name));
    if (!placed.ok()) return placed.status();
    expected[name] = {placed->global_shape, tensor.dtype()};
    placements[name] = std::move(*placed);
  }
  if (absl::Status status = check_model_tensors(directory, *manifest, expected); !status.ok()) return status;
  if (optimizer != nullptr) {
    if (absl::Status status = check_optimizer_tensors(directory, *manifest, *optimizer, rank); !status.ok()) {
      return status;
    }
  }

  LoadedCheckpoint loaded;
  BlockFiles blocks(directory, *manifest);
  for (const checkpoint::TensorEntry& entry : manifest->model_tensors()) {
    absl::StatusOr<Tensor> tensor = assemble_entry(directory, entry, placements.at(entry.name()).region, blocks);
    if (!tensor.ok()) return tensor.status();
    loaded.model[entry.name()] = std::move(*tensor);
  }
  if (optimizer != nullptr) {
    const StateDict optimizer_state = optimizer->state_dict();
    for (const checkpoint::TensorEntry& entry : manifest->optimizer_tensors()) {
      absl::StatusOr<Placement> placed = place_tensor(entry.name(), optimizer_state.at(entry.name()).shape(),
                                                      box_of(rank, parameter_of(entry.name())));
      if (!placed.ok()) return placed.status();
      // A replicated entry of another shape (checked above for parameters' state) is read
      // whole, for Optimizer::load_state_dict to name both shapes.
      const TensorRegion wanted = placed->sharded ? placed->region : whole_region(entry_shape(entry));
      absl::StatusOr<Tensor> tensor = assemble_entry(directory, entry, wanted, blocks);
      if (!tensor.ok()) return tensor.status();
      loaded.optimizer[entry.name()] = std::move(*tensor);
    }
  }
  loaded.state.step = manifest->step();
  loaded.state.consumed_samples = manifest->consumed_samples();
  loaded.state.rng = {manifest->rng_seed(), manifest->rng_offset()};
  loaded.state.wall_seconds = manifest->wall_seconds();
  return loaded;
}

}  // namespace

absl::Status save_checkpoint(const std::string& root, const Module& model, const Optimizer& optimizer,
                             const TrainState& state, const std::string& config_yaml, int64_t keep_last_n,
                             const CheckpointRank& rank) {
  const Place place = place_of(rank);
  // Every rank takes part in the same collectives whatever fails: each phase ends in agree().
  // The temporary directory is named after rank 0's process, so every rank writes into it.
  const int64_t first_pid = from_first_rank(place.world, getpid());
  const std::string name = step_directory_name(std::max<int64_t>(state.step, 0));
  const std::string target = (fs::path(root) / name).string();
  const std::string temporary = (fs::path(root) / absl::StrCat(".", name, kTemporaryMark, first_pid)).string();
  std::error_code error;

  // 1. Rank 0 makes the temporary directory.
  absl::Status status;
  if (state.step < 0) {
    status = absl::InvalidArgumentError(absl::StrCat("checkpoint step must be >= 0, got ", state.step));
  } else if (place.rank == 0) {
    fs::create_directories(root, error);
    if (error) status = absl::PermissionDeniedError(absl::StrCat(root, ": cannot create: ", error.message()));
    if (status.ok()) {
      fs::remove_all(temporary, error);
      if (!fs::create_directory(temporary, error) || error) {
        status = absl::PermissionDeniedError(absl::StrCat(temporary, ": cannot create: ", error.message()));
      }
    }
  }
  if (status = agree(place.world, status); !status.ok()) return status;

  // 2. Every rank writes its blocks.
  checkpoint::Manifest fragment;
  status = agree(place.world, write_rank_part(temporary, place, rank, model, optimizer, &fragment));
  if (!status.ok()) {
    if (place.rank == 0) fs::remove_all(temporary, error);
    return status;
  }

  // 3. Rank 0 merges the fragments into the manifest and puts the directory in place.
  auto finish = [&]() -> absl::Status {
    checkpoint::Manifest manifest;
    manifest.set_format_version(kFormatVersion);
    manifest.set_step(state.step);
    manifest.set_consumed_samples(state.consumed_samples);
    manifest.set_rng_seed(state.rng.seed);
    manifest.set_rng_offset(state.rng.offset);
    manifest.set_wall_seconds(state.wall_seconds);
    checkpoint::RankLayout* layout = manifest.mutable_layout();
    const ParallelSizes sizes = rank.groups == nullptr ? ParallelSizes() : rank.groups->layout.sizes();
    layout->set_world_size(place.size);
    layout->set_tensor(sizes.tensor);
    layout->set_context(sizes.context);
    layout->set_data(sizes.data);
    layout->set_pipeline(sizes.pipeline);
    layout->set_expert(sizes.expert);
    layout->set_expert_tensor(sizes.expert_tensor);

    std::vector<checkpoint::Manifest> fragments = {fragment};
    for (int other = 1; other < place.size; ++other) {
      const std::string path = (fs::path(temporary) / fragment_name(other)).string();
      absl::StatusOr<std::string> bytes = read_file(path);
      if (!bytes.ok()) return bytes.status();
      if (!fragments.emplace_back().ParseFromString(*bytes)) {
        return absl::DataLossError(absl::StrCat(path, ": not a valid list of rank ", other, "'s tensors"));
      }
    }
    for (int other = 1; other < place.size; ++other) fs::remove(fs::path(temporary) / fragment_name(other), error);
    if (absl::Status merged = merge_fragments(fragments, &manifest); !merged.ok()) return merged;
    absl::Status status = write_file_synced((fs::path(temporary) / kConfigFile).string(), config_yaml);
    if (!status.ok()) return status;
    manifest.add_files()->set_name(kConfigFile);
    for (checkpoint::FileEntry& file : *manifest.mutable_files()) {
      file.set_size(fs::file_size(fs::path(temporary) / file.name(), error));
      if (error) return absl::DataLossError(absl::StrCat(temporary, "/", file.name(), ": ", error.message()));
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
    if (!status.ok()) return status;
    status = remove_old_steps(root, keep_last_n, name);
    remove_leftovers(root);
    return status;
  };
  if (place.rank == 0) {
    status = finish();
    if (!status.ok()) fs::remove_all(temporary, error);
  }
  return agree(place.world, status);
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
  // Everything is read and checked, on every rank, before any model or optimizer changes.
  Communicator* world = rank.groups == nullptr ? nullptr : rank.groups->world.get();
  absl::StatusOr<LoadedCheckpoint> loaded = read_for_rank(directory, model, optimizer, rank);
  if (absl::Status status = agree(world, loaded.status()); !status.ok()) return status;

  // The optimizer first: its load changes nothing when it fails, and the model's checks above
  // are the ones Module::load_state_dict makes, so it cannot fail after the optimizer changed.
  absl::Status status;
  if (optimizer != nullptr) {
    status = optimizer->load_state_dict(loaded->optimizer);
    if (!status.ok()) {
      status = absl::InvalidArgumentError(
          absl::StrCat(directory, ": the optimizer state does not match the optimizer: ", status.message()));
    }
  }
  if (status.ok()) {
    status = model.load_state_dict(loaded->model);
    if (!status.ok()) status = absl::InternalError(absl::StrCat(directory, ": ", status.message()));
  }
  if (status = agree(world, status); !status.ok()) return status;
  return loaded->state;
}

absl::Status export_checkpoint(const std::string& directory, const std::string& output_path) {
  absl::StatusOr<checkpoint::Manifest> manifest = read_manifest(directory);
  if (!manifest.ok()) return manifest.status();
  if (absl::Status status = check_files(directory, *manifest); !status.ok()) return status;
  const fs::path parent = fs::absolute(fs::path(output_path)).parent_path();
  std::error_code error;
  if (!fs::is_directory(parent, error)) {
    return absl::NotFoundError(absl::StrCat(output_path, ": the directory ", parent.string(), " does not exist"));
  }
  BlockFiles blocks(directory, *manifest);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const checkpoint::TensorEntry& entry : manifest->model_tensors()) {
    absl::StatusOr<Tensor> whole = assemble_entry(directory, entry, whole_region(entry_shape(entry)), blocks);
    if (!whole.ok()) return whole.status();
    tensors.emplace_back(entry.name(), std::move(*whole));
  }
  // write_safetensors writes a temporary file and renames it over output_path.
  return write_safetensors(output_path, tensors, {{"format", "pt"}});
}

}  // namespace sy
