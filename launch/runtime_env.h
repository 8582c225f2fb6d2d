// Process environment the runtime needs before any library initializes: Debian's OpenBLAS
// 0.3.21 mistakes Zen CPUs for an older core and runs sgemm at half speed unless
// OPENBLAS_CORETYPE names a newer one, and it reads that only when it loads. So main()
// asks OpenBLAS which core it chose and, when that core lacks the AVX2/FMA kernels this CPU
// can run, sets the variable and re-executes itself once, before anything else runs.
#pragma once

namespace sy {

// Re-executes the current program with the tuned environment when it is missing. Returns
// only when no re-exec was needed (or possible).
void ensure_tuned_environment(char** argv);

// The OPENBLAS_CORETYPE value for this CPU, or nullptr to leave OpenBLAS's own choice.
const char* preferred_openblas_coretype();

}  // namespace sy
