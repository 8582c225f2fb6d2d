// The PyTorch reference runner: .npy files in a temporary directory, one python process per
// call.
#include "tests/support/torch_reference.h"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/support/scratch_directory.h"

#ifndef SY_TORCH_PYTHON
#define SY_TORCH_PYTHON "/usr/bin/python3"
#endif
#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy::testing {

static_assert(std::endian::native == std::endian::little, ".npy I/O here assumes a little-endian host");

const TorchPython& find_torch_python() {
  static const TorchPython found = [] {
    TorchPython result;
    std::vector<std::string> tried;
    for (const std::string candidate : {SY_TORCH_PYTHON, "python3"}) {
      const std::string command = absl::StrCat(candidate, " -c 'import torch, numpy' > /dev/null 2>&1");
      if (std::system(command.c_str()) == 0) {
        result.path = candidate;
        return result;
      }
      tried.push_back(candidate);
    }
    result.reason = absl::StrCat("no python that imports torch and numpy (tried ", absl::StrJoin(tried, ", "),
                                 "; scripts/install-deps.sh installs python3-torch and python3-numpy)");
    return result;
  }();
  return found;
}

absl::Status write_npy(const std::string& path, const Tensor& tensor) {
  Tensor host = tensor.detach().to(Device::CPU());
  std::string descr;
  std::string data;
  if (is_floating(host.dtype())) {
    descr = "<f8";
    std::vector<double> values = host.to_vector<double>();
    data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(double));
  } else if (host.dtype() == DType::kBool) {
    descr = "|b1";
    std::vector<uint8_t> values = host.to_vector<uint8_t>();
    data.assign(reinterpret_cast<const char*>(values.data()), values.size());
  } else {
    descr = "<i8";
    std::vector<int64_t> values = host.to_vector<int64_t>();
    data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t));
  }
  std::string shape = absl::StrJoin(host.shape(), ", ");
  if (host.dim() == 1) shape += ",";
  std::string header = absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", shape, "), }");
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  if (header.size() > 65535) return absl::InvalidArgumentError(absl::StrCat(path, ": .npy header too long"));
  std::ofstream out(path, std::ios::binary);
  const uint16_t length = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&length), 2);
  out << header << data;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

namespace {

// The value text after `'key': ` in a .npy header dict.
absl::StatusOr<std::string> header_value(const std::string& header, const std::string& key,
                                         const std::string& path) {
  const std::string marker = absl::StrCat("'", key, "': ");
  const size_t at = header.find(marker);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": .npy header has no '", key, "': ", header));
  }
  return header.substr(at + marker.size());
}

}  // namespace

absl::StatusOr<Tensor> read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a .npy file"));
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_length = 0, header_start = 0;
  if (major == 1) {
    uint16_t length;
    std::memcpy(&length, bytes.data() + 8, 2);
    header_length = length;
    header_start = 10;
  } else if ((major == 2 || major == 3) && bytes.size() >= 12) {
    uint32_t length;
    std::memcpy(&length, bytes.data() + 8, 4);
    header_length = length;
    header_start = 12;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported .npy version ", major));
  }
  if (bytes.size() < header_start + header_length) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated .npy header"));
  }
  const std::string header = bytes.substr(header_start, header_length);

  absl::StatusOr<std::string> descr_text = header_value(header, "descr", path);
  absl::StatusOr<std::string> order_text = header_value(header, "fortran_order", path);
  absl::StatusOr<std::string> shape_text = header_value(header, "shape", path);
  for (const auto* status : {&descr_text, &order_text, &shape_text}) {
    if (!status->ok()) return status->status();
  }
  const std::string descr = descr_text->substr(1, descr_text->find('\'', 1) - 1);
  if (!absl::StartsWith(*order_text, "False")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": Fortran-order .npy is not supported"));
  }
  Shape shape;
  const std::string dims = shape_text->substr(1, shape_text->find(')') - 1);
  for (absl::string_view part : absl::StrSplit(dims, ',', absl::SkipWhitespace())) {
    int64_t size;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &size)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad shape in .npy header: ", header));
    }
    shape.push_back(size);
  }

  const char* data = bytes.data() + header_start + header_length;
  const size_t available = bytes.size() - header_start - header_length;
  const int64_t count = shape_numel(shape);
  auto convert = [&]<typename Stored>(DType dtype) -> absl::StatusOr<Tensor> {
    if (available < count * sizeof(Stored)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", available, " data bytes for shape ",
                                                     ShapeString(shape), " of ", descr));
    }
    std::vector<Stored> values(count);
    std::memcpy(values.data(), data, count * sizeof(Stored));
    return Tensor::from_vector(values, shape, dtype);
  };
  if (descr == "<f8") return convert.operator()<double>(DType::kF64);
  if (descr == "<f4") return convert.operator()<float>(DType::kF64);
  if (descr == "<i8") return convert.operator()<int64_t>(DType::kI64);
  if (descr == "<i4") return convert.operator()<int32_t>(DType::kI64);
  if (descr == "|b1" || descr == "|u1") return convert.operator()<uint8_t>(DType::kBool);
  return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported .npy dtype '", descr, "'"));
}

absl::StatusOr<std::vector<TorchOutputs>> run_torch_reference(const std::string& script,
                                                              const std::vector<TorchCase>& cases) {
  const TorchPython& python = find_torch_python();
  if (python.path.empty()) return absl::FailedPreconditionError(python.reason);
  testing::ScratchDirectory scratch("sy_torch_reference");
  if (!scratch.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot create a temporary directory under ", std::filesystem::temp_directory_path().string()));
  }
  const std::filesystem::path& directory = scratch.path();
  auto case_path = [&](size_t index, const std::string& name) {
    return (directory / absl::StrCat(index, ".", name, ".npy")).string();
  };

  const Tensor count = Tensor::scalar(static_cast<double>(cases.size()), DType::kI64);
  if (absl::Status status = write_npy((directory / "cases.npy").string(), count); !status.ok()) return status;
  for (size_t index = 0; index < cases.size(); ++index) {
    for (const auto& [name, tensor] : cases[index].inputs) {
      if (absl::Status status = write_npy(case_path(index, name), tensor); !status.ok()) return status;
    }
  }
  const std::string script_path = absl::StrCat(SY_SOURCE_DIR, "/tests/reference/", script);
  const std::string log_path = (directory / "log.txt").string();
  const std::string command =
      absl::StrCat(python.path, " '", script_path, "' '", directory.string(), "' > '", log_path, "' 2>&1");
  const int code = std::system(command.c_str());
  auto log = [&] {
    std::ifstream in(log_path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  if (code != 0) {
    return absl::InternalError(absl::StrCat(command, " failed (status ", code, "):\n", log()));
  }
  std::vector<TorchOutputs> results(cases.size());
  for (size_t index = 0; index < cases.size(); ++index) {
    for (const std::string& name : cases[index].outputs) {
      absl::StatusOr<Tensor> tensor = read_npy(case_path(index, name));
      if (!tensor.ok()) {
        return absl::InternalError(absl::StrCat(script, " did not write ", name, " of case ", index, ": ",
                                                tensor.status().message(), "\n", log()));
      }
      results[index][name] = *std::move(tensor);
    }
  }
  return results;
}

}  // namespace sy::testing
