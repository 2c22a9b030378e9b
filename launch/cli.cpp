#include "launch/cli.h"

#include <array>
#include <functional>
#include <optional>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>

#include "comm/errors.h"
#include "finder/options.h"

namespace lrfind::launch {
namespace {

// A number filling all of `text`, or InputError("<expected>, got \"text\"").
double parseNumber(const std::string& text, const std::string& expected) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  LRFIND_INPUT_CHECK(used == text.size() && !text.empty(), expected, ", got \"", text, "\"");
  return v;
}

std::optional<double> parseThreshold(const std::string& text) {
  if (text == "none") return std::nullopt;
  return parseNumber(text, "--early-stop-threshold must be a number or \"none\"");
}

// "auto" (the optimizer's own default) or a number.
std::optional<double> parseAuto(const std::string& text, const char* flag) {
  if (text == "auto") return std::nullopt;
  return parseNumber(text, concat(flag, " must be a number or \"auto\""));
}

// "b1,b2".
std::array<double, 2> parseBetas(const std::string& text) {
  const auto comma = text.find(',');
  LRFIND_INPUT_CHECK(comma != std::string::npos && text.find(',', comma + 1) == std::string::npos,
                     "--betas must be two numbers b1,b2, got \"", text, "\"");
  const std::string expected = "--betas must be two numbers b1,b2";
  return {parseNumber(text.substr(0, comma), expected), parseNumber(text.substr(comma + 1), expected)};
}

}  // namespace

CliOutcome parseCommandLine(int argc, const char* const* argv, runtime::RunConfig& c) {
  std::string mode = "exponential", suggest = "steepest", threshold = "4.0";
  std::string betas = "0.9,0.999", weight_decay = "auto", eps = "auto";
  bool no_shuffle = false;

  CLI::App app{
      "lrfind_dist: the learning-rate range test (Smith 2015), single-process or data-parallel.\n"
      "Trains for --num-training steps while the lr grows from --min-lr to --max-lr, records the\n"
      "loss, stops when it diverges, and suggests a learning rate. The model and optimizer are\n"
      "not changed. With no arguments it runs the built-in demo (synthetic data, MLP).",
      "lrfind_dist"};
  app.get_formatter()->column_width(34);
  app.set_version_flag("--version", std::function<std::string()>(runtime::versionText),
                       "Print version and build information and exit");

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
  app.add_option("--weight-decay", weight_decay, "Weight decay, or auto for the optimizer's own (0; adamw 0.01)")
      ->capture_default_str()->group(opt_group);
  app.add_option("--betas", betas, "Adam/AdamW betas as b1,b2")->capture_default_str()->group(opt_group);
  app.add_option("--eps", eps, "Epsilon, or auto for the optimizer's own (1e-8; adagrad 1e-10)")
      ->capture_default_str()->group(opt_group);

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
  app.add_option("--threads", c.threads, "Intra-op CPU threads; 0: the node's cores / ranks on the node")
      ->capture_default_str()
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

  const auto* config_group = "Configuration files";
  app.set_config("--config", "", "Read flags from a TOML file (one 'flag = value' per line, e.g. max-lr = 10); "
                 "flags on the command line win")->group(config_group);
  bool write_config = false;
  app.add_flag("--write-config", write_config,
               "Print the full effective configuration (defaults included) as TOML for --config, and exit")
      ->configurable(false)->group(config_group);


  CliOutcome outcome;
  std::ostringstream out, err;
  try {
    app.parse(argc, argv);
    c.sweep.mode = finder::parseMode(mode);
    c.sweep.suggest = finder::parseSuggestMethod(suggest);
    c.sweep.early_stop_threshold = parseThreshold(threshold);
    c.optimizer.weight_decay = parseAuto(weight_decay, "--weight-decay");
    c.optimizer.eps = parseAuto(eps, "--eps");
    c.optimizer.betas = parseBetas(betas);
    c.shuffle = !no_shuffle;
    c.config_text = app.config_to_str(/*default_also=*/true, /*write_description=*/false);
    if (write_config) {
      out << c.config_text;
    } else {
      outcome.run = true;
    }
  } catch (const CLI::CallForHelp& e) {
    outcome.exit_code = app.exit(e, out, err);
  } catch (const CLI::CallForVersion& e) {
    outcome.exit_code = app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    err << "lrfind_dist: error: " << e.what() << " (see --help)\n";
    outcome.exit_code = runtime::kExitUsage;
  } catch (const InputError& e) {
    err << "lrfind_dist: error: " << e.what() << "\n";
    outcome.exit_code = runtime::kExitUsage;
  }
  outcome.out = out.str();
  outcome.err = err.str();
  return outcome;
}

}  // namespace lrfind::launch
