#include "launch/cli.h"

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "launch/bench.h"
#include "launch/checkpoint_command.h"
#include "launch/generate.h"
#include "launch/preprocess_command.h"
#include "launch/sweep_command.h"
#include "launch/train_command.h"
#include "launch/upcycle_command.h"

#ifndef SY_VERSION
#define SY_VERSION "0.0.0"
#endif

namespace sy {
namespace {

struct Subcommand {
  std::string_view name;
  std::string_view summary;
  std::function<int(const std::vector<std::string>&)> run;
};

int print_version(const std::vector<std::string>&) {
#ifdef SY_WITH_CUDA
  std::printf("switchyard %s (CUDA backend built)\n", SY_VERSION);
#else
  std::printf("switchyard %s (CPU only)\n", SY_VERSION);
#endif
  return 0;
}

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> list = {
      {"version", "print the version and the backends built", print_version},
      {"preprocess", "text or JSON lines -> indexed dataset (.bin/.idx); can train the tokenizer first", run_preprocess},
      {"train", "train a model: `switchyard train --config FILE` (see --help)", run_train},
      {"generate", "sample from a checkpoint: `switchyard generate --checkpoint DIR --prompt TEXT`", run_generate},
      {"checkpoint", "a checkpoint as whole tensors: `switchyard checkpoint export DIR OUT.safetensors`", run_checkpoint},
      {"sweep", "scaling-law sweeps: `switchyard sweep --config SWEEP.yaml [--dry-run]`, `sweep report DIR`", run_sweep},
      {"upcycle", "a dense checkpoint into an MoE one: `switchyard upcycle --dense DIR --config MOE.yaml --output DIR`", run_upcycle},
      {"bench", "speed against PyTorch: `switchyard bench ops|moe-layer|tokenizer|train-step`", run_bench},
  };
  return list;
}

void print_help(FILE* out) {
  std::fprintf(out,
               "switchyard — Mixture-of-Experts pretraining\n\n"
               "usage: switchyard <command> [args]\n\ncommands:\n");
  for (const Subcommand& command : subcommands()) {
    std::fprintf(out, "  %-10s %s\n", std::string(command.name).c_str(),
                 std::string(command.summary).c_str());
  }
  std::fprintf(out, "  %-10s %s\n", "--help", "this message");
}

}  // namespace

int run_cli(int argc, char** argv) {
  if (argc < 2) {
    print_help(stderr);
    return 2;
  }
  std::string_view name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_help(stdout);
    return 0;
  }
  if (name == "--version") name = "version";
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const Subcommand& command : subcommands()) {
    if (command.name == name) return command.run(args);
  }
  std::fprintf(stderr, "switchyard: unknown command '%s' (expected one of:", argv[1]);
  for (const Subcommand& command : subcommands()) std::fprintf(stderr, " %s", std::string(command.name).c_str());
  std::fprintf(stderr, "); see switchyard --help\n");
  return 2;
}

}  // namespace sy
