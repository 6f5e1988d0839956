// Prompts for the LLM roles, and the parsing of their answers.
//
// Templates are Markdown files under a prompt directory (prompts/ in the source tree,
// <prefix>/share/kforge/prompts when installed) with {{placeholder}} fields; docs/prompts.md
// lists the templates and every placeholder. A template is named by its path below the
// directory without ".md": "coder", "designer_fix", "notes/triton", "contracts/cpp".
//
// Parsing is the other half: an LLM answer is prose around fenced blocks, sometimes cut
// short, sometimes empty. extract_code / extract_design / parse_conductor find what they need
// or return invalid_argument with a message written for the model (the Conductor sends it
// back as a fix request), never an empty success.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "coordinator/store/store.h"

namespace kforge {

// Every placeholder a template may use; any other {{name}} makes load() fail.
const std::vector<std::string>& prompt_placeholders();

// The templates a prompt directory must hold (notes/ and contracts/ once per impl_type).
const std::vector<std::string>& required_prompt_templates();

class PromptLibrary {
 public:
  // Reads every *.md below `dir`. Fails (naming file, line and placeholder) on an unknown
  // placeholder or an unclosed "{{", and when a required template is missing.
  static Result<PromptLibrary> load(const std::filesystem::path& dir);

  // The template with each {{placeholder}} replaced by values.at(placeholder), verbatim
  // (values are not scanned for placeholders). Values the template does not use are ignored.
  // not_found for an unknown template; invalid_argument naming the template and the
  // placeholder when a value is missing.
  Result<std::string> render(const std::string& name,
                             const std::map<std::string, std::string>& values) const;

  // The values every prompt of one task shares: op_name, task_id, backend, arch, impl_type,
  // framework, task_desc, impl_notes (notes/<impl_type>), candidate_contract
  // (contracts/<impl_type>) and aul_reference (aul); notes and contracts are rendered with
  // the task's values, and trailing blank lines of every multi-line value are dropped.
  // Role-specific values (design, previous_code, verifier_message, suggestions) are the
  // caller's to add. not_found when the directory has no notes for spec.impl_type.
  Result<std::map<std::string, std::string>> task_values(const TaskSpec& spec) const;

  bool has(const std::string& name) const { return templates_.count(name) > 0; }
  std::vector<std::string> names() const;
  // The placeholders a template uses, sorted; empty for an unknown template.
  std::vector<std::string> placeholders_of(const std::string& name) const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  struct Piece {
    bool placeholder = false;
    std::string text;  // literal text, or the placeholder's name
  };
  struct Template {
    std::vector<Piece> pieces;
  };
  std::filesystem::path dir_;
  std::map<std::string, Template> templates_;
};

// The prompt directory to use: `configured` when not empty, else $KFORGE_PROMPT_DIR when set,
// else <dir of this executable>/../share/kforge/prompts, else <KFORGE_SOURCE_DIR>/prompts when
// that macro is defined at compile time. A configured or environment directory that lacks
// designer.md is an error (no silent fallback); not_found lists every place looked at.
Result<std::filesystem::path> find_prompt_dir(const std::filesystem::path& configured);

// The candidate file in a Coder answer. Picks, in order: the last ```python block (tags
// python, py, python3, py3, any case) that defines the entry point; else the largest other
// fenced block that defines it; else, when the answer has no fences, the whole answer from
// its first line of Python on. The entry point is `class ModelNew` or the function form
// `def <op>_<impl_type>_<framework>(`. Tolerates prose, CRLF, <think> sections and a missing
// closing fence (a cut-off answer: the code is returned and the Verifier will report it).
// invalid_argument, explaining what was expected, for an empty answer or one without the
// entry point.
Result<std::string> extract_code(std::string_view response, const std::string& impl_type);

// The AUL design in a Designer answer: the last non-empty ```aul block, else the whole answer
// trimmed. invalid_argument when that is empty.
Result<std::string> extract_design(std::string_view response);

struct ConductorDecision {
  std::string action;       // fix_code | fix_design | finish
  std::string suggestions;  // for the next Designer or Coder prompt; may be empty
};

// The first balanced {...} in the answer that parses as a JSON object with an "action" key,
// fenced or inside prose. action is trimmed and lower-cased and must be fix_code, fix_design
// or finish; suggestions is a string (an array of strings is joined by newlines) or absent.
Result<ConductorDecision> parse_conductor(std::string_view response);

}  // namespace kforge
