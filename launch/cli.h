// The switchyard subcommands and their dispatch.
#pragma once

namespace sy {

// Runs `switchyard <subcommand> ...`; returns the process exit code.
int run_cli(int argc, char** argv);

}  // namespace sy
