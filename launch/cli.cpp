#include "launch/cli.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>

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

// Levenshtein distance, ignoring case.
std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The words of a name separated by '-' or '_', sorted and joined by '-': "lr-max" and
// "max_lr" both become "lr-max", the form of "max-lr".
std::string sortedWords(const std::string& name) {
  std::vector<std::string> words(1);
  for (char ch : name) {
    if (ch == '-' || ch == '_') {
      words.emplace_back();
    } else {
      words.back() += ch;
    }
  }
  std::sort(words.begin(), words.end());
  return joined(words, "-");
}

// The candidate closest to `name` (edit distance over the name as written or over its
// words in any order), or "" when none is within a third of the name's length.
std::string closestName(const std::string& name, const std::vector<std::string>& candidates) {
  const std::size_t limit = std::max<std::size_t>(1, name.size() / 3);
  std::string best;
  std::size_t best_distance = limit + 1;
  for (const auto& c : candidates) {
    const std::size_t d = std::min(editDistance(name, c), editDistance(sortedWords(name), sortedWords(c)));
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
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
  explicit StrictToml(const CLI::App& app) : app_(app) {}

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    auto parsed = CLI::ConfigTOML::from_config(input);
    for (const auto& item : parsed) check(item);
    return parsed;
  }

 private:
  void check(const CLI::ConfigItem& item) const {
    // The app has no subcommands: every [table] and dotted key is unknown. CLI11 marks
    // a table's start and end with items named "++" and "--".
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
};

}  // namespace

CliOutcome parseCommandLine(int argc, const char* const* argv, runtime::RunConfig& c) {
  std::string mode = finder::toString(c.sweep.mode), suggest = finder::toString(c.sweep.suggest), threshold = "4.0";
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
  app.add_option("--loss", c.loss, "Loss: " + joined(runtime::lossNames(), ", "))
      ->capture_default_str()->group(model_group);

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

  const auto* run_group = "Execution and output";
  app.add_option("--threads", c.threads, "Intra-op CPU threads; 0: the node's cores / ranks on the node")
      ->capture_default_str()
      ->group(run_group);
  app.add_option("--backend", c.backend, "Communication: auto (MPI when a launcher started > 1 rank), self or mpi")
      ->check(CLI::IsMember({"auto", "self", "mpi"}))->capture_default_str()->group(run_group);
  app.add_option("--bucket-mb", c.bucket_mb,
                 "Gradient bucket size in MiB (one allreduce per bucket; the first, the last layers' gradients, "
                 "holds at most 1 MiB so that it starts early in backward)")
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
  app.config_formatter(std::make_shared<StrictToml>(app));
  app.allow_config_extras(CLI::config_extras_mode::error);  // StrictToml reports them first

  CliOutcome outcome;
  std::ostringstream out, err;
  try {
    app.parse(argc, argv);
    c.sweep.mode = finder::parseMode(mode, runtime::flagName);
    c.sweep.suggest = finder::parseSuggestMethod(suggest, runtime::flagName);
    c.sweep.early_stop_threshold = parseThreshold(threshold);
    c.optimizer.weight_decay = parseAuto(weight_decay, "--weight-decay");
    c.optimizer.eps = parseAuto(eps, "--eps");
    c.optimizer.betas = parseBetas(betas);
    c.shuffle = !no_shuffle;
    c.overlap = !no_overlap;
    c.shared_memory = !no_shared_memory;
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
  } catch (const CLI::ExtrasError& e) {
    const std::string unknown = unknownFlagMessage(app, app.remaining());
    err << "lrfind_dist: error: " << (unknown.empty() ? e.what() : unknown) << " (see --help)\n";
    outcome.exit_code = runtime::kExitUsage;
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
