// switchyard: the command-line entry point. Subcommands: version, bench (more arrive with
// the Training, Distributed and Upcycling issues).
#include <cstdio>
#include <cstring>
#include <string>

#include "launch/cli.h"
#include "launch/runtime_env.h"
#include "parallel/communicator.h"

int main(int argc, char** argv) {
  sy::ensure_tuned_environment(argv);
  const int status = sy::run_cli(argc, argv);
  // Commands that communicate (train, bench dispatcher) bring MPI up themselves.
  if (sy::distributed_initialized()) sy::finalize_distributed();
  return status;
}
