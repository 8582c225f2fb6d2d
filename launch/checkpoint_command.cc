// `switchyard checkpoint export` (launch/checkpoint_command.h).
#include "launch/checkpoint_command.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "launch/checkpoint.h"

namespace sy {
namespace {

constexpr char kUsage[] =
    "usage: switchyard checkpoint export <checkpoint> <out.safetensors>\n"
    "  <checkpoint>  a step directory, or a run's checkpoints/ folder (its `latest` step)\n"
    "Writes the model tensors, whatever rank layout saved them, as one safetensors file of\n"
    "whole tensors (written to a temporary name and renamed).\n";

}  // namespace

absl::Status checkpoint_command(const std::vector<std::string>& args, std::FILE* out) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::fputs(kUsage, out);
    return absl::OkStatus();
  }
  if (args.size() != 3 || args[0] != "export") {
    return absl::InvalidArgumentError(absl::StrCat("expected `export <checkpoint> <out.safetensors>`\n", kUsage));
  }
  absl::StatusOr<std::string> directory = resolve_checkpoint(args[1]);
  if (!directory.ok()) return directory.status();
  if (absl::Status status = export_checkpoint(*directory, args[2]); !status.ok()) return status;
  std::error_code error;
  const uintmax_t bytes = std::filesystem::file_size(args[2], error);
  std::fprintf(out, "exported the model tensors of %s to %s (%.1f MB)\n", directory->c_str(), args[2].c_str(),
               error ? 0.0 : static_cast<double>(bytes) / 1e6);
  return absl::OkStatus();
}

int run_checkpoint(const std::vector<std::string>& args) {
  absl::Status status;
  try {
    status = checkpoint_command(args, stdout);
  } catch (const Error& error) {
    status = absl::InternalError(error.what());
  }
  if (status.ok()) return 0;
  std::fprintf(stderr, "switchyard checkpoint: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace sy
