// Models whose forward returns more than the logits, end to end through lrfind_dist:
// --output N picks them from a tuple or list, --output NAME from a dict, and the curve is
// the one of the same model returning the logits alone. Every misfit between --output
// and what forward returns is one error line naming --output, exit code 2, and does not
// blame the inputs. Images stored [N, H, W, C] that a conv model rejects get
// --channels-last suggested.

#include <hdf5.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "cli_util.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

constexpr int64_t kFeatures = 8, kClasses = 4;
// A short sweep whose suggestion has points left (no warning line on stderr).
const std::string kShort = " --num-training 12 --skip-begin 2 --skip-end 2 --plot ''";

// The MLP of saveScriptModel (same weights for every `ret`), whose forward computes the
// logits `h` and returns `ret`, an expression of h.
void saveModelReturning(const std::string& path, const std::string& ret) {
  torch::manual_seed(0);
  torch::jit::Module m("Net");
  m.register_parameter("w1", (torch::randn({kFeatures, 32}) * 0.2).set_requires_grad(true), false);
  m.register_parameter("b1", torch::zeros({32}).set_requires_grad(true), false);
  m.register_parameter("w2", (torch::randn({32, kClasses}) * 0.2).set_requires_grad(true), false);
  m.define(R"(
def forward(self, x):
    h = torch.matmul(torch.relu(torch.matmul(x, self.w1) + self.b1), self.w2)
    return )" + ret + "\n");
  m.save(path);
}

// The models and the data of every test here, in `dir`.
void writeInputs(const TempDir& dir) {
  writeClassification(dir.file("d.h5"), 200, kFeatures, kClasses);
  saveModelReturning(dir.file("plain.pt"), "h");
  saveModelReturning(dir.file("tuple.pt"), "(h, torch.sum(h, 1))");
  saveModelReturning(dir.file("dict.pt"), R"({"logits": h, "aux": torch.relu(h)})");
  saveModelReturning(dir.file("list.pt"), "[torch.relu(h), h]");
  saveModelReturning(dir.file("mixed.pt"), "(h, 3)");
}

runtime::ResultsData sweep(const TempDir& dir, const std::string& model, const std::string& out) {
  const auto r = runCli(dir, "--model " + model + " --data d.h5 --batch-size 16 --min-lr 1e-3 --max-lr 10 --out " +
                                 out + kShort);
  EXPECT_EQ(r.code, 0) << model << ": " << r.err;
  if (r.code != 0) return {};
  return runtime::readResults(dir.file(out));
}

TEST(OutputCli, PickedLogitsGiveTheCurveOfTheModelReturningThemAlone) {
  TempDir dir;
  writeInputs(dir);
  const auto plain = sweep(dir, "plain.pt", "plain.h5");
  ASSERT_EQ(plain.loss_raw.size(), 12u);
  for (const auto& [model, out] : std::vector<std::pair<std::string, std::string>>{
           {"tuple.pt --output 0", "tuple.h5"},
           {"dict.pt --output logits", "dict.h5"},
           {"list.pt --output 1", "list.h5"}}) {
    const auto picked = sweep(dir, model, out);
    EXPECT_EQ(picked.loss_raw, plain.loss_raw) << model << ": bit for bit";
    EXPECT_EQ(picked.lr, plain.lr) << model;
  }
}

TEST(OutputCli, MisfitsNameOutputAndNotTheInputs) {
  TempDir dir;
  writeInputs(dir);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--model tuple.pt",
       "--model tuple.pt: forward returns a tuple of 2 elements; pick the logits with --output N (0..1)"},
      {"--model list.pt",
       "--model list.pt: forward returns a list of 2 elements; pick the logits with --output N (0..1)"},
      {"--model dict.pt",
       "--model dict.pt: forward returns a dict with keys logits, aux; pick the logits with --output NAME"},
      {"--model tuple.pt --output 2", "--model tuple.pt: --output 2 is out of range: forward returns a tuple of 2 "
                                      "elements; pick the logits with --output N (0..1)"},
      {"--model tuple.pt --output logits", "--model tuple.pt: --output logits is a dict key, but forward returns a "
                                           "tuple of 2 elements; pick the logits with --output N (0..1)"},
      {"--model dict.pt --output logit",
       "--model dict.pt: --output logit is not a key of the dict forward returns (its keys: logits, aux)"},
      {"--model mixed.pt --output 1",
       "--model mixed.pt: --output 1 picks int from forward's Tuple[Tensor, int]; it must pick the logits, a Tensor"},
      {"--model plain.pt --output 0", "--model plain.pt: forward returns one Tensor; --output 0 applies only to a "
                                      "forward that returns a tuple, list or dict (drop --output)"},
      {"--model mlp --output 0", "--output 0 picks the logits from a TorchScript model's tuple, list or dict; the "
                                 "built-in --model mlp returns one Tensor (drop --output)"},
  };
  for (const auto& [args, expected] : cases) {
    const auto r = runCli(dir, args + " --data d.h5 --out r.h5" + kShort);
    EXPECT_EQ(r.code, 2) << args << ": " << r.err;
    EXPECT_EQ(lines(r.err), 1) << args << ": " << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(r.err.find("rejects inputs"), std::string::npos) << args << ": not the inputs' fault";
    EXPECT_FALSE(std::filesystem::exists(dir.file("r.h5"))) << args;
  }
}

// A conv model for 3-channel images, given float32 [N, H, W, C] (the file's layout is
// not [N, C, H, W]): LibTorch's conv error, and the suggestion.
TEST(OutputCli, ConvModelOnChannelsLastImagesSuggestsTheFlag) {
  TempDir dir;
  const hsize_t n = 64, h = 8, w = 8, c = 3;
  std::vector<float> x(n * h * w * c);
  std::vector<int64_t> y(n);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) / 17.0f;
  for (hsize_t i = 0; i < n; ++i) y[i] = static_cast<int64_t>(i % kClasses);
  hid_t f = H5Fcreate(dir.file("nhwc.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, h, w, c}, x.data());
  writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {n}, y.data());
  H5Fclose(f);
  torch::manual_seed(0);
  torch::jit::Module m("Conv");
  m.register_parameter("w", (torch::randn({kClasses, 3, 3, 3}) * 0.2).set_requires_grad(true), false);
  m.define(R"(
def forward(self, x):
    return torch.mean(torch.conv2d(x, self.w), [2, 3])
)");
  m.save(dir.file("conv.pt"));

  const auto r = runCli(dir, "--model conv.pt --data nhwc.h5 --out r.h5" + kShort);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--model conv.pt rejects inputs of shape [2, 8, 8, 3] (from --data nhwc.h5)"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("; the inputs look channels-last [N, H, W, C]: try --channels-last"), std::string::npos)
      << r.err;
  // With the flag the same file trains.
  const auto ok = runCli(dir, "--model conv.pt --data nhwc.h5 --channels-last --out r.h5" + kShort);
  EXPECT_EQ(ok.code, 0) << ok.err;
}

}  // namespace
}  // namespace lrfind
