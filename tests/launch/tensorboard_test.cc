// TensorBoard event files: CRC-32C against published check values, and files read back by an
// independent reader (tests/reference/tensorboard_reader.py) that checks both CRCs of every record.
#include "launch/tensorboard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <tuple>

#include "tests/launch/tensorboard_reader.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

TEST(Crc32c, MatchesTheCastagnoliCheckValues) {
  const char* check = "123456789";
  EXPECT_EQ(crc32c(check, 9), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  // RFC 3720 (iSCSI), appendix B.4.
  unsigned char bytes[32];
  std::memset(bytes, 0, sizeof(bytes));
  EXPECT_EQ(crc32c(bytes, 32), 0x8A9136AAu);
  std::memset(bytes, 0xFF, sizeof(bytes));
  EXPECT_EQ(crc32c(bytes, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) bytes[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(bytes, 32), 0x46DD794Eu);
}

TEST(Crc32c, MaskRotatesRightBy15AndAddsTheTfRecordDelta) {
  const uint32_t crc = 0xE3069283u;  // of "123456789"
  const uint32_t rotated = (crc >> 15) | (crc << 17);
  EXPECT_EQ(masked_crc32c("123456789", 9), static_cast<uint32_t>(rotated + 0xa282ead8u));
}

class EventFile : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(scratch_.ok());
    std::string missing = testing::protobuf_python_missing();
    if (!missing.empty()) GTEST_SKIP() << missing;
  }
  testing::ScratchDirectory scratch_{"sy_tensorboard"};
};

TEST_F(EventFile, IsNamedForTimeAndHostAndStartsWithTheFileVersion) {
  const double before = static_cast<double>(std::time(nullptr));
  absl::StatusOr<std::unique_ptr<EventFileWriter>> writer = EventFileWriter::open(scratch_.file("tb"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->flush().ok());
  const std::filesystem::path path((*writer)->path());
  EXPECT_EQ(path.parent_path(), std::filesystem::path(scratch_.file("tb")));
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  std::smatch match;
  const std::string name = path.filename().string();
  ASSERT_TRUE(std::regex_match(name, match, std::regex(R"(events\.out\.tfevents\.(\d+)\.(.+))"))) << name;
  EXPECT_GE(std::stod(match[1].str()), before);
  EXPECT_EQ(match[2].str(), host);

  testing::EventFileContents contents = testing::read_event_file(path.string());
  ASSERT_TRUE(contents.ok) << contents.output;
  ASSERT_EQ(contents.records.size(), 1u) << contents.output;
  EXPECT_EQ(contents.records[0].value("file_version", ""), "brain.Event:2");
  EXPECT_GE(contents.records[0].value("wall_time", 0.0), before);
}

TEST_F(EventFile, EveryScalarReadsBackThroughTheIndependentReader) {
  absl::StatusOr<std::unique_ptr<EventFileWriter>> writer = EventFileWriter::open(scratch_.path().string());
  ASSERT_TRUE(writer.ok()) << writer.status();
  // Zero (a proto3 default that must still be written), negatives, tiny and huge values,
  // steps 0 and beyond 32 bits, tags with '/' groups.
  std::vector<std::tuple<std::string, int64_t, double>> written;
  const std::vector<std::string> tags = {"train/lm_loss", "train/lr", "moe/layer1/load_cv"};
  const std::vector<double> values = {0.0, -1.5, 3.14159265358979, 1e-30, 6.02e23, -0.0};
  int64_t step = 0;
  for (double value : values) {
    for (size_t t = 0; t < tags.size(); ++t) {
      written.emplace_back(tags[t], step, value * static_cast<double>(t + 1));
      ASSERT_TRUE((*writer)->add_scalar(tags[t], step, value * static_cast<double>(t + 1), 1.7e9 + step).ok());
    }
    step = step == 0 ? 1 : step * 1000;  // 0, 1, 1000, 1e6, 1e9, 1e12
  }
  ASSERT_TRUE((*writer)->flush().ok());

  testing::EventFileContents contents = testing::read_event_file((*writer)->path());
  ASSERT_TRUE(contents.ok) << contents.output;
  ASSERT_EQ(contents.records.size(), written.size() + 1) << contents.output;
  EXPECT_EQ(contents.records[0].value("file_version", ""), "brain.Event:2");
  for (size_t i = 0; i < written.size(); ++i) {
    const nlohmann::json& record = contents.records[i + 1];
    const auto& [tag, expected_step, value] = written[i];
    EXPECT_EQ(record.value("tag", ""), tag) << i;
    EXPECT_EQ(record.value("step", int64_t{-1}), expected_step) << i;
    EXPECT_EQ(record.value("value", 1.0 / 7), static_cast<double>(static_cast<float>(value))) << i;  // f32 on the wire
    EXPECT_EQ(record.value("wall_time", 0.0), 1.7e9 + expected_step) << i;
  }
}

// The reader is only a check if it can fail: a flipped byte in a record's data or length
// fails its CRC, and a cut record is reported.
TEST_F(EventFile, TheReaderRejectsDamagedRecords) {
  std::string path;
  {
    absl::StatusOr<std::unique_ptr<EventFileWriter>> writer = EventFileWriter::open(scratch_.file("tb"));
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->add_scalar("loss", 7, 2.5, 1.7e9).ok());
    path = (*writer)->path();
  }
  ASSERT_TRUE(testing::read_event_file(path).ok);
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto read_with = [&](const std::string& damaged) {
    const std::string copy = scratch_.file("damaged");
    std::ofstream(copy, std::ios::binary | std::ios::trunc) << damaged;
    return testing::read_event_file(copy);
  };
  std::string data_flip = bytes;
  data_flip[data_flip.size() - 6] ^= 0x01;  // inside the last record's data
  testing::EventFileContents contents = read_with(data_flip);
  EXPECT_FALSE(contents.ok);
  EXPECT_NE(contents.output.find("data CRC mismatch"), std::string::npos) << contents.output;
  std::string length_flip = bytes;
  length_flip[0] ^= 0x01;  // the first record's length
  contents = read_with(length_flip);
  EXPECT_FALSE(contents.ok);
  EXPECT_NE(contents.output.find("length CRC mismatch"), std::string::npos) << contents.output;
  contents = read_with(bytes.substr(0, bytes.size() - 2));
  EXPECT_FALSE(contents.ok);
  EXPECT_NE(contents.output.find("runs past the end"), std::string::npos) << contents.output;
}

}  // namespace
}  // namespace sy
