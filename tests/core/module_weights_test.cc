// Module weights through safetensors: round trip, and refusals that leave the module intact.
#include "core/io/module_weights.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/io/safetensors.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

class ModuleWeights : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return scratch_.file(name); }

  testing::ScratchDirectory scratch_{"sy_weights"};
};

TEST_F(ModuleWeights, RoundTripGivesIdenticalOutputs) {
  Generator generator(1);
  SwiGLU source(8, 16, 0.5, &generator);
  SwiGLU target(8, 16, 0.5, &generator);
  ASSERT_TRUE(save_weights(source, path("w.safetensors"), {{"format", "pt"}}).ok());
  ASSERT_TRUE(load_weights(target, path("w.safetensors")).ok());
  Tensor x = randn({3, 8});
  EXPECT_EQ(source.forward(x).to_vector<float>(), target.forward(x).to_vector<float>());
}

TEST_F(ModuleWeights, WrongShapeOrDtypeOrDamageIsRefusedWithoutChanges) {
  Generator generator(2);
  SwiGLU model(8, 16, 0.5, &generator);
  std::vector<float> before = model.state_dict().begin()->second.to_vector<float>();
  StateDict state = model.state_dict();
  std::vector<std::pair<std::string, Tensor>> tensors(state.begin(), state.end());
  // A shape mismatch names the key and both shapes.
  auto wrong_shape = tensors;
  wrong_shape[0].second = Tensor::zeros({2, 2});
  ASSERT_TRUE(write_safetensors(path("shape.safetensors"), wrong_shape).ok());
  absl::Status status = load_weights(model, path("shape.safetensors"));
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(wrong_shape[0].first), std::string::npos) << status;
  EXPECT_NE(status.message().find("(2, 2)"), std::string::npos) << status;
  // An integer tensor where a float weight is expected.
  auto wrong_dtype = tensors;
  wrong_dtype[0].second = Tensor::zeros(tensors[0].second.shape(), DType::kI64);
  ASSERT_TRUE(write_safetensors(path("dtype.safetensors"), wrong_dtype).ok());
  status = load_weights(model, path("dtype.safetensors"));
  EXPECT_NE(status.message().find("dtype mismatch"), std::string::npos) << status;
  // A truncated file names the file.
  ASSERT_TRUE(write_safetensors(path("cut.safetensors"), tensors).ok());
  std::filesystem::resize_file(path("cut.safetensors"), 100);
  status = load_weights(model, path("cut.safetensors"));
  EXPECT_NE(status.message().find("cut.safetensors"), std::string::npos) << status;
  EXPECT_EQ(model.state_dict().begin()->second.to_vector<float>(), before);  // nothing changed
  // bf16 weights load into f32 (converted).
  auto bf16 = tensors;
  for (auto& [name, tensor] : bf16) tensor = tensor.to(DType::kBF16);
  ASSERT_TRUE(write_safetensors(path("bf16.safetensors"), bf16).ok());
  EXPECT_TRUE(load_weights(model, path("bf16.safetensors")).ok());
  EXPECT_NE(model.state_dict().begin()->second.to_vector<float>(), before);  // rounded to bf16
}

}  // namespace
}  // namespace sy
