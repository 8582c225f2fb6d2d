// safetensors read/write: round trips of every dtype, an independent numpy reader/writer,
// and clear errors for damaged files.
#include "core/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/ops/ops.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

class Safetensors : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return scratch_.file(name); }

  testing::ScratchDirectory scratch_{"sy_safetensors"};
};

std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  std::vector<double> values = {-1.5, 0, 2.25, 3, 4.5, -6};
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (DType dtype : {DType::kF64, DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64, DType::kBool}) {
    tensors.emplace_back(absl::StrCat("t_", dtype_name(dtype)), Tensor::from_vector(values, {2, 3}, dtype));
  }
  tensors.emplace_back("scalar", Tensor::scalar(7.0));
  tensors.emplace_back("transposed", Tensor::from_vector(values, {2, 3}).t());  // written contiguous
  return tensors;
}

TEST_F(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  auto tensors = sample_tensors();
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), tensors, {{"format", "pt"}}).ok());
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path("a.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("format"), "pt");
  ASSERT_EQ(file->tensors.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    absl::StatusOr<Tensor> read = file->get(name);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->dtype(), tensor.dtype()) << name;
    EXPECT_EQ(read->shape(), tensor.shape()) << name;
    EXPECT_EQ(read->to_vector<double>(), tensor.to_vector<double>()) << name;
  }
  EXPECT_EQ(file->get("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(Safetensors, AgreesWithAnIndependentNumpyImplementation) {
  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed (scripts/install-deps.sh installs it)";
  }
  auto tensors = sample_tensors();
  ASSERT_TRUE(write_safetensors(path("in.safetensors"), tensors, {{"format", "pt"}}).ok());
  std::string command = absl::StrCat("/usr/bin/python3 ", SY_SOURCE_DIR, "/tests/reference/safetensors_numpy.py ",
                                     path("in.safetensors"), " ", path("out.safetensors"));
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path("out.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  for (const auto& [name, tensor] : tensors) {
    absl::StatusOr<Tensor> doubled = file->get(name + ".x2");
    ASSERT_TRUE(doubled.ok()) << doubled.status();
    EXPECT_EQ(doubled->to_vector<double>(), (tensor.to(DType::kF64) * 2.0).to_vector<double>()) << name;
  }
  absl::StatusOr<Tensor> from_numpy = file->get("from_numpy");
  ASSERT_TRUE(from_numpy.ok());
  EXPECT_EQ(from_numpy->to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST_F(Safetensors, TruncatedFileIsRefusedWithItsSizes) {
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), sample_tensors()).ok());
  std::filesystem::resize_file(path("a.safetensors"), std::filesystem::file_size(path("a.safetensors")) - 5);
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path("a.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("truncated"), std::string::npos) << file.status();
}

TEST_F(Safetensors, BadHeaderIsRefused) {
  {
    std::ofstream out(path("bad.safetensors"), std::ios::binary);
    uint64_t length = 5;
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << "{oops";
  }
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path("bad.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("not a JSON object"), std::string::npos) << file.status();
  EXPECT_EQ(read_safetensors(path("absent.safetensors")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(Safetensors, ShapeThatDisagreesWithOffsetsIsRefused) {
  std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})";
  {
    std::ofstream out(path("shape.safetensors"), std::ios::binary);
    uint64_t length = header.size();
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << header << std::string(12, '\0');
  }
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path("shape.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("needs 16 bytes"), std::string::npos) << file.status();
}

TEST_F(Safetensors, FailedWriteLeavesTheOldFileIntact) {
  ASSERT_TRUE(write_safetensors(path("keep.safetensors"), {{"a", Tensor::ones({2})}}).ok());
  // A repeated name is refused before anything is written.
  absl::Status status = write_safetensors(path("keep.safetensors"), {{"b", Tensor::ones({3})}, {"b", Tensor::ones({3})}});
  EXPECT_FALSE(status.ok());
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path("keep.safetensors"));
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(file->get("a").ok());
  // No temporary files are left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(scratch_.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

}  // namespace
}  // namespace sy
