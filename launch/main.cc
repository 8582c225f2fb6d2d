// switchyard: the command-line entry point. Subcommands: version, bench (more arrive with
// the Training, Distributed and Upcycling issues).
#include <cstdio>
#include <cstring>
#include <string>

#include "launch/cli.h"
#include "launch/runtime_env.h"

int main(int argc, char** argv) {
  sy::ensure_tuned_environment(argv);
  return sy::run_cli(argc, argv);
}
