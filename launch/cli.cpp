#include "launch/cli.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/closest_name.h"
#include "common/error.h"
#include "finder/options.h"
#include "runtime/factories.h"

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

// "MEAN[,MEAN...]:STD[,STD...]" (--normalize); "" is none.
void parseNormalize(const std::string& text, std::vector<double>& mean, std::vector<double>& std_dev) {
  mean.clear();
  std_dev.clear();
  if (text.empty()) return;
  const std::string expected = "--normalize must be MEAN[,MEAN...]:STD[,STD...], e.g. 0.5:0.25 or "
                               "0.49,0.48,0.45:0.25,0.24,0.26";
  const auto colon = text.find(':');
  LRFIND_INPUT_CHECK(colon != std::string::npos && text.find(':', colon + 1) == std::string::npos, expected,
                     ", got \"", text, "\"");
  auto numbers = [&](const std::string& list, std::vector<double>& out) {
    std::size_t from = 0;
    while (true) {
      const auto comma = list.find(',', from);
      out.push_back(parseNumber(list.substr(from, comma - from), expected));
      if (comma == std::string::npos) break;
      from = comma + 1;
    }
  };
  numbers(text.substr(0, colon), mean);
  numbers(text.substr(colon + 1), std_dev);
  for (const double s : std_dev) {
    LRFIND_INPUT_CHECK(s > 0 && std::isfinite(s), "--normalize: every STD must be > 0, got ", s);
  }
  for (const double m : mean) LRFIND_INPUT_CHECK(std::isfinite(m), "--normalize: every MEAN must be finite, got ", m);
}

std::string joined(const std::vector<std::string>& names, const char* separator) {
  std::string text;
  for (const auto& n : names) text += (text.empty() ? "" : separator) + n;
  return text;
}

std::vector<std::string> modeNames() {
  return {finder::toString(finder::Mode::kExponential), finder::toString(finder::Mode::kLinear)};
}

std::vector<std::string> suggestNames() {
  std::vector<std::string> names;
  for (auto m : finder::allSuggestMethods()) names.emplace_back(finder::toString(m));
  return names;
}

// Long names of the app's options ("--max-lr"); only those a config file may set when
// `configurable_only`.
std::vector<std::string> optionNames(const CLI::App& app, bool configurable_only) {
  std::vector<std::string> names;
  for (const CLI::Option* opt : app.get_options()) {
    if (configurable_only && !opt->get_configurable()) continue;
    for (const auto& lname : opt->get_lnames()) names.push_back("--" + lname);
  }
  return names;
}

// "unknown flag --lr-max; did you mean --max-lr?" for the first unknown flag among
// the arguments CLI11 left over; "" when they hold no flag (a stray value).
std::string unknownFlagMessage(const CLI::App& app, const std::vector<std::string>& leftover) {
  for (const auto& arg : leftover) {
    const std::size_t dashes = arg.rfind("--", 0) == 0 ? 2 : 1;
    if (arg.size() <= dashes || arg[0] != '-' || !std::isalpha(static_cast<unsigned char>(arg[dashes]))) continue;
    const std::string flag = arg.substr(0, arg.find('='));
    const std::string near = dashes == 2 ? closestName(flag, optionNames(app, false)) : "";
    return concat("unknown flag ", flag, near.empty() ? "" : concat("; did you mean ", near, "?"));
  }
  return "";
}

// TOML as CLI11 reads and writes it, except that every key must name a flag that a
// config file may set: a typo is an InputError naming the file and the key, never a
// silently ignored line. CLI11's own config_extras_mode::error says only "INI was not
// able to parse max_lr", without the file or a suggestion.
class StrictToml : public CLI::ConfigTOML {
 public:
  // One axis of the [grid] table, with where it was read for messages.
  struct TableAxis {
    runtime::GridAxis axis;
    std::string where;  // "--config run.toml: [grid] seed"
  };

  explicit StrictToml(const CLI::App& app) : app_(app) {}

  // The [grid] table's keys go to gridTable(), the rest to CLI11.
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    auto parsed = CLI::ConfigTOML::from_config(input);
    std::vector<CLI::ConfigItem> flags;
    for (auto& item : parsed) {
      if (item.parents == std::vector<std::string>{kGridTable}) {
        if (item.name != "++" && item.name != "--") {
          grid_table_.push_back({{item.name, item.inputs}, concat(where(), "[", kGridTable, "] ", item.name)});
        }
        continue;
      }
      check(item);
      flags.push_back(std::move(item));
    }
    return flags;
  }

  // The [grid] table in file order; empty before parsing or without one.
  const std::vector<TableAxis>& gridTable() const { return grid_table_; }

 private:
  static constexpr const char* kGridTable = "grid";

  void check(const CLI::ConfigItem& item) const {
    // The app has no subcommands: every [table] but [grid], and every dotted key, is
    // unknown. CLI11 marks a table's start and end with items named "++" and "--".
    LRFIND_INPUT_CHECK(item.parents.empty() || (item.name != "++" && item.name != "--"), where(),
                       "unknown table [", CLI::detail::join(item.parents, "."),
                       "] (the file holds flag = value lines without tables, e.g. max-lr = 10)");
    const CLI::Option* opt = item.parents.empty() ? app_.get_option_no_throw("--" + item.name) : nullptr;
    if (opt == nullptr) {
      const std::string near = closestName("--" + item.name, optionNames(app_, true));
      throw InputError(concat(where(), "unknown key \"", item.fullname(), "\" (",
                              near.empty() ? "keys are the flags without their leading --; see --help"
                                           : concat("did you mean \"", near.substr(2), "\"?"),
                              ")"));
    }
    LRFIND_INPUT_CHECK(item.name != kGridTable, where(), "\"grid\" is a table in a config file: [grid], then one "
                       "line per axis, e.g. optimizer = [\"sgd\", \"adam\"]");
    LRFIND_INPUT_CHECK(opt->get_configurable(), where(), "\"", item.name,
                       "\" cannot be set in a config file; give --", item.name, " on the command line");
  }

  // "--config run.toml: ". CLI11 reads the file while parsing, after --config has its value.
  std::string where() const {
    const CLI::Option* config = app_.get_config_ptr();
    return config != nullptr && config->count() == 1 ? concat("--config ", config->results().front(), ": ")
                                                     : std::string("--config: ");
  }

  const CLI::App& app_;
  mutable std::vector<TableAxis> grid_table_;
};

// The grid as a [grid] table that StrictToml reads back to the same axes and strings:
// one line per axis, its values an array quoted as CLI11 quotes values.
std::string gridTableText(const std::vector<runtime::GridAxis>& grid) {
  if (grid.empty()) return "";
  std::string text = "[grid]\n";
  for (const auto& axis : grid) {
    std::string values;
    for (const auto& v : axis.values) values += (values.empty() ? "" : ", ") + CLI::detail::convert_arg_for_ini(v);
    text += concat(axis.name, " = [", values, "]\n");
  }
  return text;
}

// The flags' long names without "--": the grid tells an unknown axis from a shared flag.
std::vector<std::string> flagNames(const CLI::App& app) {
  std::vector<std::string> names;
  for (const auto& n : optionNames(app, false)) names.push_back(n.substr(2));
  return names;
}

// A parse of the command line with axis values appended: each axis's flag takes the
// last value given. Its error lines start with `where` ("--grid AXIS=VALUE: ").
struct GridValues {
  std::vector<std::string> axes;
  std::string where;
};

CliOutcome parse(const std::vector<std::string>& args, runtime::RunConfig& c, const GridValues* grid_values);

// Parses the command line once per value of each axis (the other axes as shared): the
// first value the real parser refuses, as its outcome; nullopt when all pass.
std::optional<CliOutcome> checkGridValues(const std::vector<std::string>& args, const runtime::RunConfig& initial,
                                          const std::vector<runtime::GridAxis>& grid) {
  for (const auto& axis : grid) {
    for (const auto& value : axis.values) {
      std::vector<std::string> point_args = args;
      for (auto& a : runtime::axisArguments(axis.name, value)) point_args.push_back(std::move(a));
      runtime::RunConfig point = initial;
      const GridValues grid_values{{axis.name}, concat("--grid ", axis.name, "=", value, ": ")};
      CliOutcome outcome = parse(point_args, point, &grid_values);
      if (outcome.exit_code != 0) return outcome;
    }
  }
  return std::nullopt;
}

// RunConfig::grid_point_config: the shared flags with one grid point's values.
runtime::RunConfig pointConfig(const std::vector<std::string>& args, const runtime::RunConfig& initial,
                               const runtime::GridPoint& point) {
  std::vector<std::string> point_args = args;
  GridValues grid_values;
  for (const auto& [axis, value] : point.values) grid_values.axes.push_back(axis);
  for (const auto& a : point.arguments) point_args.push_back(a);
  runtime::RunConfig c = initial;
  const CliOutcome outcome = parse(point_args, c, &grid_values);
  // Every value parsed alone (checkGridValues); a failure here is a bug, said plainly.
  LRFIND_CHECK(outcome.exit_code == 0, "grid sweep ", point.index, " does not parse: ", outcome.err);
  return c;
}

CliOutcome parse(const std::vector<std::string>& args, runtime::RunConfig& c, const GridValues* grid_values) {
  const runtime::RunConfig initial = c;
  std::string mode = finder::toString(c.sweep.mode), suggest = finder::toString(c.sweep.suggest), threshold = "4.0";
  std::string betas = "0.9,0.999", weight_decay = "auto", eps = "auto", input_scale = "auto", normalize;
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
  app.add_option("--output", c.output, "Where a TorchScript model's forward puts the logits when it returns more "
                 "than one value: N, the index into a tuple or list; NAME, the key of a Dict[str, Tensor] "
                 "[default: forward returns one Tensor]")
      ->group(model_group);
  app.add_option("--data", c.data, "HDF5 file with inputs and targets, or a seeded built-in set: 'synthetic' (4096 x 32 features, "
                 "10 classes) or 'synthetic-images' (4096 x 16 x 16, 10 classes; for --model cnn)")
      ->capture_default_str()->group(model_group);
  app.add_option("--x-key", c.x_key, "HDF5 dataset of inputs, [samples, features...] or images [samples, C, H, W]: "
                 "any numeric type (uint8, int8, uint16, int16, int32, int64, float16, float32, float64), held as "
                 "stored and made float32 one batch at a time")
      ->capture_default_str()->group(model_group);
  app.add_option("--y-key", c.y_key, "HDF5 dataset of targets: integer or bool class labels [samples] (trailing "
                 "size-1 axes, as in [samples, 1, 1, 1], are dropped) or float targets [samples] / [samples, k]")
      ->capture_default_str()->group(model_group);
  app.add_option("--labels", c.labels, "Read the targets from another HDF5 file: FILE or FILE:DATASET (default "
                 "dataset: --y-key); its rows must match --data's [default: the targets are in --data]")
      ->group(model_group);
  app.add_option("--input-scale", input_scale, "Multiply the inputs by S (before --normalize); auto: 1/255 for "
                 "uint8 inputs, 1 for every other type. The results' input_scale attribute holds the value used")
      ->capture_default_str()->group(model_group);
  app.add_option("--normalize", normalize, "MEAN[,MEAN...]:STD[,STD...]: (x - MEAN) / STD per channel after "
                 "--input-scale, one value for all channels or one per channel (axis 1 of [N, C, H, W] or of [N, "
                 "features]; the last axis with --channels-last) [default: none]")
      ->group(model_group);
  app.add_flag("--channels-last", c.channels_last, "The inputs are stored [samples, H, W, C]: each batch is permuted "
               "to [samples, C, H, W] before the model")
      ->group(model_group);
  app.add_option("--loss", c.loss, "Loss: " + joined(runtime::lossNames(), ", "))
      ->capture_default_str()->group(model_group);

  const auto* val_group = "Validation";
  std::string monitor = "auto";
  app.add_option("--val-data", c.val_data, "Validation mode: after every optimizer step, evaluate the model (eval "
                 "mode, no gradients) on this HDF5 file, read with the --x-key/--y-key/--input-scale/--normalize/"
                 "--channels-last of --data, each rank its share; results: val_loss per step [default: none]")
      ->group(val_group);
  app.add_option("--val-labels", c.val_labels, "The targets of --val-data from another HDF5 file: FILE or "
                 "FILE:DATASET, as --labels [default: in --val-data]")
      ->group(val_group);
  app.add_option("--val-fraction", c.val_fraction, "Validation mode on --data itself: hold out its last ceil(F x N) "
                 "rows (never trained on; the sweep trains on the first ones) and evaluate them after every step; "
                 "0: none")
      ->capture_default_str()->group(val_group);
  app.add_option("--val-batches", c.val_batches, "Evaluate only the first K batches of the validation data, each "
                 "of the global batch size (--batch-size x ranks x --accumulate); 0: the whole validation set")
      ->capture_default_str()->group(val_group);
  app.add_option("--monitor", monitor, "The loss that is smoothed, stops the sweep and gives the suggestion: train "
                 "or val; auto: val with validation data, else train")
      ->check(CLI::IsMember({"auto", "train", "val"}))->capture_default_str()->group(val_group);

  const auto* opt_group = "Optimizer";
  app.add_option("--optimizer", c.optimizer.name, "Optimizer: " + joined(runtime::optimizerNames(), ", "))
      ->capture_default_str()->group(opt_group);
  app.add_option("--momentum", c.optimizer.momentum, "Momentum (sgd, rmsprop)")->capture_default_str()->group(opt_group);
  app.add_flag("--nesterov", c.optimizer.nesterov, "Nesterov momentum (sgd; needs --momentum > 0)")->group(opt_group);
  app.add_option("--weight-decay", weight_decay, "Weight decay, or auto for the optimizer's own (0; adamw 0.01)")
      ->capture_default_str()->group(opt_group);
  app.add_option("--betas", betas, "Adam/AdamW betas as b1,b2")->capture_default_str()->group(opt_group);
  app.add_option("--eps", eps, "Epsilon, or auto for the optimizer's own (1e-8; adagrad 1e-10)")
      ->capture_default_str()->group(opt_group);
  app.add_option("--param-group", c.param_groups,
                 "Repeatable: REGEX=MULT trains the parameters whose name (as named_parameters() gives it, e.g. "
                 "fc2.weight) matches REGEX (a search: anchor it with ^) at MULT x the scheduled lr. The first "
                 "matching pattern wins; the others form the default group (1x), whose lr is the sweep's lr, stop "
                 "rule and suggestion. A pattern matching nothing is an error [default: one group]")
      ->run_callback_for_default(false)  // none given: no line in --write-config (not one empty pattern)
      ->group(opt_group);
  app.add_flag("--no-decay-bias-norm", c.no_decay_bias_norm,
               "No weight decay for every parameter named *.bias or bias, every 1-D parameter, and every parameter "
               "of a module whose type name contains Norm (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, "
               "RMSNorm); each --param-group keeps its multiplier")
      ->group(opt_group);

  const auto* sweep_group = "Sweep";
  app.add_option("--batch-size", c.batch_size, "Samples per step on each rank")->capture_default_str()->group(sweep_group);
  app.add_option("--min-lr", c.sweep.min_lr, "First learning rate (> 0)")->capture_default_str()->group(sweep_group);
  app.add_option("--max-lr", c.sweep.max_lr, "Last learning rate (> --min-lr)")->capture_default_str()->group(sweep_group);
  app.add_option("--num-training", c.sweep.num_training, "Optimizer steps in the sweep (>= 2)")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--mode", mode, "lr schedule: " + joined(modeNames(), " or "))
      ->check(CLI::IsMember(modeNames()))->capture_default_str()->group(sweep_group);
  app.add_option("--early-stop-threshold", threshold,
                 "Stop when the smoothed loss exceeds this times the best so far; 'none' never stops")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--beta", c.sweep.beta, "Loss smoothing factor in [0, 1); 0 = raw loss")
      ->capture_default_str()->group(sweep_group);
  app.add_option("--suggest", suggest, "Suggestion method: " + joined(suggestNames(), ", "))
      ->check(CLI::IsMember(suggestNames()))
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
  std::string precision = "fp32";
  app.add_option("--precision", precision, "fp32; bf16: the forward pass and the loss under autocast in "
                 "bfloat16 (CPU or CUDA), with float32 weights, gradients and optimizer state; fp16 (CUDA only): "
                 "the same in float16 with dynamic loss scaling (2^16, halved and the step skipped when a gradient "
                 "is not finite, doubled after 2000 good steps)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))->capture_default_str()->group(sweep_group);

  const auto* grid_group = "Tuning grid";
  std::vector<std::string> grid_args;
  app.add_option("--grid", grid_args,
                 "Repeatable: AXIS=v1,v2,... runs one sweep per combination of the axes' values (the cartesian "
                 "product); every other flag is shared by all sweeps. AXIS is one of " +
                     joined(runtime::gridAxisNames(), ", ") +
                     "; a value is what --AXIS takes (nesterov: true or false) and replaces --AXIS given elsewhere. "
                     "Values are split at every ',' (a betas pair b1,b2 goes in a [grid] table). Also a [grid] table "
                     "in --config, one line per axis: optimizer = [\"sgd\", \"adam\"]. Grid order: sweeps 0, 1, ... "
                     "are nested loops over the axes in the order given ([grid] table first, then --grid), the last "
                     "axis varying fastest. Results: one --out file, sweep i in /sweeps/<i>, a row per sweep in /summary, "
                     "seed groups (median lr and its spread over seeds) with a seed axis, the fit lr* ~ B^alpha with a "
                     "batch-size axis; the plot overlays every sweep (README \"Tuning grid\")")
      ->allow_extra_args(false)->configurable(false)->group(grid_group);
  app.add_option("--ranks-per-sweep", c.ranks_per_sweep,
                 concat("Ranks that run each sweep of a --grid together, data-parallel (>= 1). R must divide the "
                        "world size: the world splits into world/R groups, each running its sweeps one after "
                        "another. Sweeps go to groups ",
                        runtime::kSweepGroupRule, " [default: the whole world]"))
      ->run_callback_for_default(false)  // no value, no line in --write-config: unchanged without a grid
      ->group(grid_group);

  const auto* run_group = "Execution and output";
  app.add_option("--threads", c.threads, "Intra-op CPU threads; 0: the node's cores / ranks on the node")
      ->capture_default_str()
      ->group(run_group);
  app.add_option("--backend", c.backend, "Communication: auto (MPI when a launcher started > 1 rank), self or mpi")
      ->check(CLI::IsMember({"auto", "self", "mpi"}))->capture_default_str()->group(run_group);
  app.add_option("--bucket-mb", c.bucket_mb,
                 "Gradient bucket size in MiB (one allreduce per bucket; the first, the last layers' gradients, "
                 "holds at most 1 MiB, or the bucket size if smaller, so that it starts early in backward)")
      ->capture_default_str()->group(run_group);
  bool no_overlap = false, no_shared_memory = false;
  app.add_flag("--no-overlap", no_overlap,
               "Average the gradients after backward instead of starting each bucket's allreduce during "
               "backward as soon as its gradients are ready (the same sums either way)")->group(run_group);
  app.add_flag("--no-shared-memory", no_shared_memory,
               "With every rank on one node, average the gradients with MPI messages instead of reading the "
               "other ranks' gradients from shared memory (/dev/shm)")->group(run_group);
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
                 "Seconds any wait for another rank (MPI or NCCL: gradients, the loss gather, the stop decision, "
                 "set-up) may last. Past it the job ends by itself with exit code 3 and names the rank that did "
                 "not answer; the steps so far stay in <out>.partial. Make it longer than the slowest step and "
                 "the slowest set-up (loading the model and data). Joining NCCL may take twice as long, at least "
                 "60 s")
      ->capture_default_str()->group(run_group);
  app.add_option("--stall-warning", c.stall_warning_s,
                 "Seconds after which rank 0 names, once per stall, the ranks it is still waiting for; 0: never")
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
  app.set_config("--config", "", "Read flags from a TOML file (one 'flag = value' per line, e.g. max-lr = 10; an unknown "
                 "key is an error); flags on the command line win")->group(config_group);
  bool write_config = false;
  app.add_flag("--write-config", write_config,
               "Print the full effective configuration (defaults included) as TOML for --config, and exit")
      ->configurable(false)->group(config_group);
  if (grid_values != nullptr) {
    for (const auto& axis : grid_values->axes) {
      app.get_option("--" + axis)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }
  }
  const auto toml = std::make_shared<StrictToml>(app);
  app.config_formatter(toml);
  app.allow_config_extras(CLI::config_extras_mode::error);  // StrictToml reports them first

  // A value of the grid that the parser refuses: "--grid seed=x: <the parser's message>".
  const std::string where = grid_values != nullptr ? grid_values->where : std::string();
  CliOutcome outcome;
  std::ostringstream out, err;
  try {
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    app.parse(static_cast<int>(argv.size()), argv.data());
    c.sweep.mode = finder::parseMode(mode, runtime::flagName);
    c.sweep.suggest = finder::parseSuggestMethod(suggest, runtime::flagName);
    c.sweep.early_stop_threshold = parseThreshold(threshold);
    c.optimizer.weight_decay = parseAuto(weight_decay, "--weight-decay");
    c.optimizer.eps = parseAuto(eps, "--eps");
    c.optimizer.betas = parseBetas(betas);
    c.input_scale = parseAuto(input_scale, "--input-scale");
    LRFIND_INPUT_CHECK(!c.input_scale || (std::isfinite(*c.input_scale) && *c.input_scale != 0),
                       "--input-scale must be a finite non-zero number or \"auto\", got \"", input_scale, "\"");
    parseNormalize(normalize, c.normalize_mean, c.normalize_std);
    const bool validating = !c.val_data.empty() || c.val_fraction > 0;
    c.sweep.monitor = monitor == "auto" ? (validating ? finder::Monitor::kVal : finder::Monitor::kTrain)
                                        : finder::parseMonitor(monitor, runtime::flagName);
    c.sweep.precision = finder::parsePrecision(precision, runtime::flagName);
    c.shuffle = !no_shuffle;
    c.overlap = !no_overlap;
    c.shared_memory = !no_shared_memory;
    if (grid_values != nullptr) return outcome;  // the values parse; the grid is the caller's

    const auto flags = flagNames(app);
    c.grid.clear();
    for (const auto& [axis, axis_where] : toml->gridTable()) {
      runtime::checkGridAxis(axis, axis_where, flags);
      runtime::addGridAxis(c.grid, axis, axis_where);
    }
    for (const auto& arg : grid_args) {
      runtime::addGridAxis(c.grid, runtime::parseGridArgument(arg, flags), "--grid " + arg);
    }
    runtime::gridSize(c.grid);  // refuses a grid too large to run
    if (app.count("--ranks-per-sweep") > 0) {
      LRFIND_INPUT_CHECK(c.ranks_per_sweep >= 1, "--ranks-per-sweep must be >= 1, got ", c.ranks_per_sweep);
      LRFIND_INPUT_CHECK(!c.grid.empty(), "--ranks-per-sweep applies to a --grid (or a [grid] table in --config); "
                         "without one the sweep runs on every rank");
    }
    if (auto refused = checkGridValues(args, initial, c.grid)) return *refused;
    if (!c.grid.empty()) {
      c.grid_point_config = [args, initial](const runtime::GridPoint& point) {
        return pointConfig(args, initial, point);
      };
    }

    c.config_text = app.config_to_str(/*default_also=*/true, /*write_description=*/false) + gridTableText(c.grid);
    if (write_config) {
      out << c.config_text;
    } else {
      outcome.run = true;
    }
  } catch (const CLI::CallForHelp& e) {
    outcome.exit_code = app.exit(e, out, err);
  } catch (const CLI::CallForVersion& e) {
    outcome.exit_code = app.exit(e, out, err);
  } catch (const CLI::ExtrasError& e) {
    const std::string unknown = unknownFlagMessage(app, app.remaining());
    err << "lrfind_dist: error: " << where << (unknown.empty() ? e.what() : unknown) << " (see --help)\n";
    outcome.exit_code = runtime::kExitUsage;
  } catch (const CLI::ParseError& e) {
    err << "lrfind_dist: error: " << where << e.what() << " (see --help)\n";
    outcome.exit_code = runtime::kExitUsage;
  } catch (const InputError& e) {
    err << "lrfind_dist: error: " << where << e.what() << "\n";
    outcome.exit_code = runtime::kExitUsage;
  }
  outcome.out = out.str();
  outcome.err = err.str();
  return outcome;
}

}  // namespace

CliOutcome parseCommandLine(int argc, const char* const* argv, runtime::RunConfig& c) {
  return parse(std::vector<std::string>(argv, argv + argc), c, nullptr);
}

}  // namespace lrfind::launch
