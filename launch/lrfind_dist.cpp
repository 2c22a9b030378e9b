// lrfind_dist: the LR range test from the command line. Parses flags into a
// runtime::RunConfig and runs it; see --help.

#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "comm/errors.h"
#include "finder/options.h"
#include "runtime/app.h"

namespace {

using lrfind::runtime::RunConfig;

std::optional<double> parseThreshold(const std::string& text) {
  if (text == "none") return std::nullopt;
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  LRFIND_INPUT_CHECK(used == text.size() && !text.empty(),
                     "--early-stop-threshold must be a number or \"none\", got \"", text, "\"");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  RunConfig c;
  std::string mode = "exponential", suggest = "steepest", threshold = "4.0";
  std::vector<double> betas = {0.9, 0.999};
  double weight_decay = 0, eps = 0;
  bool no_shuffle = false;

  CLI::App app{
      "lrfind_dist: the learning-rate range test (Smith 2015), single-process or data-parallel.\n"
      "Trains for --num-training steps while the lr grows from --min-lr to --max-lr, records the\n"
      "loss, stops when it diverges, and suggests a learning rate. The model and optimizer are\n"
      "not changed. With no arguments it runs the built-in demo (synthetic data, MLP).",
      "lrfind_dist"};
  app.get_formatter()->column_width(34);
  app.set_version_flag("--version", lrfind::runtime::versionText(), "Print version and build information and exit");

  const auto* model_group = "Model and data";
  app.add_option("--model", c.model, "Built-in model (mlp, cnn) or a TorchScript file (torch.jit.script(m).save(path))")
      ->capture_default_str()->group(model_group);
  app.add_option("--data", c.data, "HDF5 file with inputs and targets, or a seeded built-in set: 'synthetic' (4096 x 32 features, "
                 "10 classes) or 'synthetic-images' (4096 x 16 x 16, 10 classes; for --model cnn)")
      ->capture_default_str()->group(model_group);
  app.add_option("--x-key", c.x_key, "HDF5 dataset of inputs: float32/float64, [samples, features...]")
      ->capture_default_str()->group(model_group);
  app.add_option("--y-key", c.y_key, "HDF5 dataset of targets: int class labels [samples] or float targets")
      ->capture_default_str()->group(model_group);
  app.add_option("--loss", c.loss, "Loss: cross_entropy, nll, mse, l1, smooth_l1, bce_with_logits")
      ->capture_default_str()->group(model_group);

  const auto* opt_group = "Optimizer";
  app.add_option("--optimizer", c.optimizer.name, "Optimizer: sgd, adam, adamw, rmsprop, adagrad")
      ->capture_default_str()->group(opt_group);
  app.add_option("--momentum", c.optimizer.momentum, "Momentum (sgd, rmsprop)")->capture_default_str()->group(opt_group);
  app.add_flag("--nesterov", c.optimizer.nesterov, "Nesterov momentum (sgd; needs --momentum > 0)")->group(opt_group);
  auto* wd_opt = app.add_option("--weight-decay", weight_decay,
                                "Weight decay [default: the optimizer's own: 0, adamw 0.01]")->group(opt_group);
  app.add_option("--betas", betas, "Adam/AdamW betas as b1,b2")
      ->expected(2)->delimiter(',')->capture_default_str()->group(opt_group);
  auto* eps_opt = app.add_option("--eps", eps, "Epsilon [default: the optimizer's own, 1e-8; adagrad 1e-10]")
                      ->group(opt_group);

  const auto* sweep_group = "Sweep";
  app.add_option("--batch-size", c.batch_size, "Samples per step on each rank")->capture_default_str()->group(sweep_group);
  app.add_option("--min-lr", c.sweep.min_lr, "First learning rate (> 0)")->capture_default_str()->group(sweep_group);
  app.add_option("--max-lr", c.sweep.max_lr, "Last learning rate (> --min-lr)")->capture_default_str()->group(sweep_group);
  app.add_option("--num-training", c.sweep.num_training, "Optimizer steps in the sweep (>= 2)")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--mode", mode, "lr schedule: exponential or linear")
      ->check(CLI::IsMember({"exponential", "linear"}))->capture_default_str()->group(sweep_group);
  app.add_option("--early-stop-threshold", threshold,
                 "Stop when the smoothed loss exceeds this times the best so far; 'none' never stops")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--beta", c.sweep.beta, "Loss smoothing factor in [0, 1); 0 = raw loss")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--suggest", suggest, "Suggestion method: steepest, valley, minimum, steep, slide")
      ->check(CLI::IsMember({"steepest", "valley", "minimum", "steep", "slide"}))
      ->capture_default_str()->group(sweep_group);
  app.add_option("--skip-begin", c.sweep.skip_begin, "Points ignored at the start by the suggestion")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--skip-end", c.sweep.skip_end, "Points ignored at the end by the suggestion")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--accumulate", c.sweep.accumulate, "Micro-batches per optimizer step (gradient accumulation)")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--seed", c.seed, "Seed for shuffling, synthetic data and built-in model weights")
      ->capture_default_str()->group(sweep_group);
  app.add_flag("--no-shuffle", no_shuffle, "Take samples in file order instead of a seeded shuffle")->group(sweep_group);

  const auto* run_group = "Execution and output";
  app.add_option("--threads", c.threads, "Intra-op CPU threads [default: the node's cores / ranks on the node]")
      ->group(run_group);
  app.add_option("--backend", c.backend, "Communication: auto (MPI when a launcher started > 1 rank), self or mpi")
      ->check(CLI::IsMember({"auto", "self", "mpi"}))->capture_default_str()->group(run_group);
  app.add_option("--bucket-mb", c.bucket_mb, "Gradient bucket size in MiB (one allreduce per bucket)")
      ->capture_default_str()->group(run_group);
  app.add_flag("--check-consistency", c.check_consistency,
               "Compare a checksum of the parameters across ranks after the sweep")->group(run_group);
  app.add_option("--device", c.device,
                 "auto (CUDA if LibTorch has it and a GPU is visible, else CPU), cpu or cuda. "
                 "On CUDA, rank r uses GPU (node-local rank mod visible GPUs) and gradients are averaged with NCCL")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str()->group(run_group);
  app.add_flag("--allow-gpu-sharing", c.allow_gpu_sharing,
               "Let several ranks of a node share one GPU (more ranks than GPUs); gradients then travel "
               "through host memory over MPI instead of NCCL")->group(run_group);
  app.add_option("--comm-timeout", c.comm_timeout_s,
                 "Seconds an NCCL collective may take before the job stops with an error instead of hanging")
      ->capture_default_str()->group(run_group);
  app.add_option("--out", c.out, "HDF5 results file (written as <out>.partial, renamed when done)")
      ->capture_default_str()->group(run_group);
  app.add_option("--json", c.json, "Also write a JSON summary here [default: none]")->group(run_group);
  app.add_option("--plot", c.plot, "SVG plot of loss vs lr; '' for none")->capture_default_str()->group(run_group);
  app.add_flag("--print-lr", c.print_lr, "Print only the suggested lr on stdout (LR=$(lrfind_dist ... --print-lr))")
      ->group(run_group);
  app.add_flag("--force", c.force, "Overwrite existing --out/--json/--plot files")->group(run_group);
  app.add_flag("--verbose", c.verbose, "More detail on stderr, LibTorch backtraces on errors")->group(run_group);

  try {
    app.parse(argc, argv);
    c.sweep.mode = lrfind::finder::parseMode(mode);
    c.sweep.suggest = lrfind::finder::parseSuggestMethod(suggest);
    c.sweep.early_stop_threshold = parseThreshold(threshold);
    if (wd_opt->count() > 0) c.optimizer.weight_decay = weight_decay;
    if (eps_opt->count() > 0) c.optimizer.eps = eps;
    c.optimizer.betas = {betas.at(0), betas.at(1)};
    c.shuffle = !no_shuffle;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "lrfind_dist: error: %s (see --help)\n", e.what());
    return lrfind::runtime::kExitUsage;
  } catch (const lrfind::InputError& e) {
    std::fprintf(stderr, "lrfind_dist: error: %s\n", e.what());
    return lrfind::runtime::kExitUsage;
  }
  return lrfind::runtime::run(c);
}
