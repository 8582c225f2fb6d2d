#include "launch/runtime_env.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

namespace sy {

const char* preferred_openblas_coretype() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!avx2_fma) return nullptr;
  // The core OpenBLAS chose at load time; the ones below have no AVX2/FMA kernels.
  std::string_view chosen = openblas_get_corename();
  for (std::string_view good : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"}) {
    if (chosen == good) return nullptr;
  }
  return avx512 ? "SkylakeX" : "Haswell";
}

void ensure_tuned_environment(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || std::getenv("SY_NO_REEXEC") != nullptr) return;
  const char* coretype = preferred_openblas_coretype();
  if (coretype == nullptr) return;
  setenv("OPENBLAS_CORETYPE", coretype, 1);
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with OpenBLAS's own choice.
}

}  // namespace sy
