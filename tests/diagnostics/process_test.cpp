// Whole-process behaviour, by running diagnostics_child with
// CTXPOOL_DIAGNOSTICS set: exit status, SUMMARY lines, start-up errors,
// halt_on_error, suppressions files and the JSON-lines and SARIF reports.
#include <ctxpool/diagnostics.hpp>

#include <doctest/doctest.h>

#include <boost/json/src.hpp>  // header-only Boost.JSON, to parse the reports

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <ctxpool/version.hpp>

#include "support.hpp"

namespace json = boost::json;
using ctxpool_test::child_result;
using ctxpool_test::scratch_dir;

namespace {

child_result run(const std::string& scenario, const std::optional<std::string>& diagnostics,
                 const scratch_dir& dir) {
  return ctxpool_test::run_child(CTXPOOL_DIAGNOSTICS_CHILD, scenario, diagnostics, dir);
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

std::size_t occurrences(const std::string& text, std::string_view part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

std::vector<json::object> json_lines(const std::string& path) {
  std::vector<json::object> lines;
  std::istringstream in(ctxpool_test::read_file(path));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(json::parse(line).as_object());
  }
  return lines;
}

}  // namespace

TEST_CASE("unset: detection off, a stale read goes unreported, exit 0") {
  scratch_dir dir;
  CHECK(run("enabled", std::nullopt, dir).exit_status == 11);
  const auto result = run("stale", std::nullopt, dir);
  CHECK(result.exit_status == 0);
  CHECK_FALSE(contains(result.err, "ctxpool"));
}

TEST_CASE("off: the same") {
  scratch_dir dir;
  CHECK(run("enabled", "off", dir).exit_status == 11);
  CHECK(run("stale", "off", dir).exit_status == 0);
}

TEST_CASE("residue: detection on before main") {
  scratch_dir dir;
  CHECK(run("enabled", "residue", dir).exit_status == 10);
}

TEST_CASE("a stale read: reported once with a count, SUMMARY line, exit status 66") {
  scratch_dir dir;
  const auto result = run("stale", "residue", dir);
  CHECK(result.exit_status == 66);
  CHECK(occurrences(result.err, "ERROR: ctxpool: stale-read of 'auth_token' (std::string)") == 1);
  CHECK(contains(result.err, "SUMMARY: ctxpool: stale-read: 1 finding(s), 3 occurrence(s)"));
  CHECK(contains(result.err, "child: main returns"));  // reported at exit, not before
  CHECK_FALSE(contains(result.err, "alice-secret-token"));
}

TEST_CASE("exitcode= changes the exit status; exitcode=0 leaves it alone") {
  scratch_dir dir;
  CHECK(run("stale", "residue:exitcode=3", dir).exit_status == 3);
  const auto result = run("stale", "residue:exitcode=0", dir);
  CHECK(result.exit_status == 0);
  CHECK(contains(result.err, "SUMMARY: ctxpool: stale-read"));
}

TEST_CASE("a clean program exits 0 with no SUMMARY") {
  scratch_dir dir;
  const auto result = run("clean", "residue", dir);
  CHECK(result.exit_status == 0);
  CHECK_FALSE(contains(result.err, "SUMMARY"));
}

TEST_CASE("residue of a watched thread_local: reported and exit 66") {
  scratch_dir dir;
  const auto result = run("residue", "residue", dir);
  CHECK(result.exit_status == 66);
  CHECK(
      contains(result.err, "ERROR: ctxpool: residue in watched thread_local 'legacy_flags' (int)"));
  CHECK(contains(result.err, "\"sets-flags\""));
  CHECK(contains(result.err, "SUMMARY: ctxpool: residue: 1 finding(s), 1 occurrence(s)"));
}

TEST_CASE("one SUMMARY line per kind") {
  scratch_dir dir;
  const auto result = run("both", "residue", dir);
  CHECK(result.exit_status == 66);
  CHECK(occurrences(result.err, "SUMMARY: ctxpool: ") == 2);
  CHECK(contains(result.err, "SUMMARY: ctxpool: stale-read:"));
  CHECK(contains(result.err, "SUMMARY: ctxpool: residue:"));
}

TEST_CASE("halt_on_error=1 stops at the first finding with the exit code") {
  scratch_dir dir;
  const auto result = run("both", "residue:halt_on_error=1:exitcode=9", dir);
  CHECK(result.exit_status == 9);
  CHECK(contains(result.err, "ERROR: ctxpool: stale-read"));
  CHECK_FALSE(contains(result.err, "child: main returns"));
  CHECK_FALSE(contains(result.err, "residue in watched"));
  CHECK(contains(result.err, "SUMMARY: ctxpool: stale-read: 1 finding(s), 1 occurrence(s)"));
}

TEST_CASE("leaks=1 reports a kept context and a value only a token holds") {
  scratch_dir dir;
  const auto result = run("leak", "residue:leaks=1", dir);
  CHECK(result.exit_status == 66);
  CHECK(contains(result.err, "ERROR: ctxpool: leaked-context created by task"));
  CHECK(contains(result.err, "ERROR: ctxpool: leaked-value of context_var 'user' (std::string)"));
  CHECK(contains(result.err, "SUMMARY: ctxpool: leaked-value: 1 finding(s)"));
  CHECK(contains(result.err, "SUMMARY: ctxpool: leaked-context: 1 finding(s)"));
  CHECK(run("leak", "residue", dir).exit_status == 0);  // leaks=0: not looked for
}

TEST_CASE("misconfiguration: a clear message and a non-zero exit before main") {
  scratch_dir dir;
  struct bad_case {
    std::string value;
    std::string expected;
  };
  const std::vector<bad_case> cases = {
      {"residu", "unknown mode 'residu'"},
      {"residue:exit_code=1", "unknown option 'exit_code'"},
      {"residue:exitcode=sixty", "malformed value 'sixty'"},
      {"residue:halt_on_error=true", "malformed value 'true'"},
      {"residue:suppressions=/nonexistent/supp.txt",
       "cannot read suppressions file '/nonexistent/supp.txt'"},
      {"residue:report=/nonexistent-dir/r.json", "cannot write report '/nonexistent-dir/r.json'"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value);
    const auto result = run("clean", c.value, dir);
    CHECK(result.exit_status == 2);
    CHECK(contains(result.err, c.expected));
    CHECK_FALSE(contains(result.err, "child: main returns"));
  }
}

TEST_CASE("suppressions file: silences matches and prints what each suppressed") {
  scratch_dir dir;
  const auto supp = dir.file("supp.txt");
  std::ofstream(supp) << "# known\nstale-read:auth_*\nresidue:nothing_matches_this\n";
  const auto result = run("both", "residue:suppressions=" + supp, dir);
  CHECK(result.exit_status == 66);  // the residue is not suppressed
  CHECK_FALSE(contains(result.err, "ERROR: ctxpool: stale-read"));
  CHECK(contains(result.err, "suppression 'stale-read:auth_*' suppressed 3 occurrence(s)"));
  CHECK(contains(result.err,
                 "suppression 'residue:nothing_matches_this' suppressed 0 occurrence(s)"));
  // The lines the findings themselves suggest silence them.
  std::ofstream(supp) << "stale-read:auth_token\nresidue:legacy_flags\n";
  CHECK(contains(result.err, "silence this: residue:legacy_flags"));
  CHECK(run("both", "residue:suppressions=" + supp, dir).exit_status == 0);
  std::ofstream(supp) << "stale-read:*\nresidue:*diagnostics_child.cpp\n";
  CHECK(run("both", "residue:suppressions=" + supp, dir).exit_status == 0);
}

TEST_CASE("suppression lines that matched nothing are named at exit") {
  scratch_dir dir;
  const auto supp = dir.file("supp.txt");
  std::ofstream(supp) << "stale-read:auth_tokn\nthread-cache:no_such_cache\n";
  const auto result = run("stale", "residue:suppressions=" + supp, dir);
  CHECK(result.exit_status == 66);  // the misspelt line hid nothing
  CHECK(contains(result.err,
                 "suppression 'stale-read:auth_tokn' suppressed 0 occurrence(s): it "
                 "matched nothing, check its spelling"));
  CHECK(contains(result.err,
                 "suppression 'thread-cache:no_such_cache' matched no plain thread_local"));
}

TEST_CASE(
    "findings a test guard took still reach the report and the SUMMARY, not the exit status") {
  scratch_dir dir;
  const auto path = dir.file("report.sarif");
  const auto result = run("taken", "residue:report=" + path, dir);
  CHECK(contains(result.err, "child: took 1 finding(s)"));
  CHECK(result.exit_status == 0);  // the test framework fails the test, not the detector
  CHECK(contains(result.err, "SUMMARY: ctxpool: stale-read: 1 finding(s), 3 occurrence(s)"));
  const auto log = json::parse(ctxpool_test::read_file(path)).as_object();
  const auto& results = log.at("runs").as_array().at(0).at("results").as_array();
  REQUIRE(results.size() == 1);
  CHECK(results.at(0).at("ruleId").as_string() == "stale-read");
  CHECK(results.at(0).at("properties").at("variable").as_string() == "auth_token");
}

TEST_CASE("report=...json: JSON lines with a schema version, one per finding, then a summary") {
  scratch_dir dir;
  const auto path = dir.file("report.jsonl");
  const auto result = run("both", "residue:report=" + path, dir);
  CHECK(result.exit_status == 66);
  const auto lines = json_lines(path);
  REQUIRE(lines.size() == 3);
  for (const auto& line : lines) {
    CHECK(line.at("schema").as_string() == "ctxpool-diagnostics");
    CHECK(line.at("schema_version").as_int64() == 1);
  }
  const auto& stale = lines[0];
  CHECK(stale.at("type").as_string() == "finding");
  CHECK(stale.at("kind").as_string() == "stale-read");
  CHECK(stale.at("variable").as_string() == "auth_token");
  CHECK(stale.at("type_name").as_string() == "std::string");
  CHECK(stale.at("count").as_int64() == 3);
  CHECK(stale.at("task").at("name").as_string() == "anonymous");
  CHECK(stale.at("writer").at("name").as_string() == "login");
  CHECK(stale.at("site").at("line").as_int64() > 0);
  CHECK(stale.at("write_site").at("file").as_string().ends_with("diagnostics_child.cpp"));
  CHECK(lines[1].at("kind").as_string() == "residue");
  const auto& summary = lines[2];
  CHECK(summary.at("type").as_string() == "summary");
  CHECK(summary.at("counts").at("stale-read").at("occurrences").as_int64() == 3);
  CHECK(summary.at("counts").at("residue").at("findings").as_int64() == 1);
  CHECK_FALSE(contains(ctxpool_test::read_file(path), "alice-secret-token"));
}

TEST_CASE("report=...sarif: a SARIF 2.1.0 log code scanning accepts") {
  scratch_dir dir;
  const auto path = dir.file("report.sarif");
  CHECK(run("both", "residue:report=" + path, dir).exit_status == 66);
  const auto log = json::parse(ctxpool_test::read_file(path)).as_object();
  CHECK(log.at("$schema").as_string().ends_with("sarif-2.1.0.json"));
  CHECK(log.at("version").as_string() == "2.1.0");
  const auto& runs = log.at("runs").as_array();
  REQUIRE(runs.size() == 1);
  const auto& driver = runs[0].at("tool").at("driver").as_object();
  CHECK(driver.at("name").as_string() == "ctxpool-diagnostics");
  // The tool version is the release's, from project(... VERSION) through
  // the generated <ctxpool/version.hpp>.
  CHECK(driver.at("version").as_string() == CTXPOOL_PROJECT_VERSION);
  CHECK(std::string_view(CTXPOOL_VERSION_STRING) == CTXPOOL_PROJECT_VERSION);
  CHECK(CTXPOOL_VERSION_MAJOR * 10000 + CTXPOOL_VERSION_MINOR * 100 + CTXPOOL_VERSION_PATCH > 0);
  const auto& rules = driver.at("rules").as_array();
  std::vector<std::string> rule_ids;
  for (const auto& rule : rules) {
    rule_ids.emplace_back(rule.at("id").as_string());
    CHECK_FALSE(rule.at("shortDescription").at("text").as_string().empty());
  }
  const auto& results = runs[0].at("results").as_array();
  REQUIRE(results.size() == 2);
  for (const auto& r : results) {
    const auto rule_id = std::string(r.at("ruleId").as_string());
    CHECK(std::find(rule_ids.begin(), rule_ids.end(), rule_id) != rule_ids.end());
    CHECK(rule_ids.at(static_cast<std::size_t>(r.at("ruleIndex").as_int64())) == rule_id);
    CHECK(r.at("level").as_string() == "error");
    CHECK_FALSE(r.at("message").at("text").as_string().empty());
    const auto& locations = r.at("locations").as_array();
    REQUIRE(locations.size() >= 1);
    const auto& physical = locations[0].at("physicalLocation");
    CHECK_FALSE(physical.at("artifactLocation").at("uri").as_string().empty());
    CHECK(physical.at("region").at("startLine").as_int64() >= 1);
  }
  CHECK(results[0].at("ruleId").as_string() == "stale-read");
  CHECK(results[0].at("occurrenceCount").as_int64() == 3);
  CHECK(results[0]
            .at("locations")
            .as_array()[0]
            .at("physicalLocation")
            .at("artifactLocation")
            .at("uri")
            .as_string()
            .ends_with("diagnostics_child.cpp"));
}

TEST_CASE("report=...:format=text: the stderr text, in a file") {
  scratch_dir dir;
  const auto path = dir.file("report.txt");
  CHECK(run("stale", "residue:format=text:report=" + path, dir).exit_status == 66);
  const auto text = ctxpool_test::read_file(path);
  CHECK(contains(text, "ERROR: ctxpool: stale-read of 'auth_token'"));
  CHECK(contains(text, "SUMMARY: ctxpool: stale-read: 1 finding(s), 3 occurrence(s)"));
}

TEST_CASE(
    "report=%p is replaced by the process id, so test processes do not overwrite each other") {
  scratch_dir dir;
  CHECK(run("stale", "residue:report=" + dir.file("r-%p.jsonl"), dir).exit_status == 66);
  std::size_t files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(dir.file("x")).parent_path())) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("r-") && name.ends_with(".jsonl") && name != "r-%p.jsonl") ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("one SARIF report for many processes: results merged into one run") {
  scratch_dir dir;
  const auto path = dir.file("residue.sarif");
  std::ofstream(path) << "left over from something else\n";  // not ctxpool's: replaced
  CHECK(run("stale", "residue:report=" + path, dir).exit_status == 66);
  CHECK(run("clean", "residue:report=" + path, dir).exit_status == 0);
  CHECK(run("residue", "residue:report=" + path, dir).exit_status == 66);
  const auto log = json::parse(ctxpool_test::read_file(path)).as_object();
  const auto& runs = log.at("runs").as_array();
  REQUIRE(runs.size() == 1);  // code scanning takes one run per tool and category
  const auto& results = runs[0].at("results").as_array();
  REQUIRE(results.size() == 2);
  CHECK(results[0].at("ruleId").as_string() == "stale-read");
  CHECK(results[1].at("ruleId").as_string() == "residue");
}

TEST_CASE("a clean process alone still writes a valid, empty SARIF log") {
  scratch_dir dir;
  const auto path = dir.file("clean.sarif");
  CHECK(run("clean", "residue:report=" + path, dir).exit_status == 0);
  const auto log = json::parse(ctxpool_test::read_file(path)).as_object();
  CHECK(log.at("runs").as_array()[0].at("results").as_array().empty());
}

TEST_CASE("one JSON-lines report for many processes: each appends its lines") {
  scratch_dir dir;
  const auto path = dir.file("residue.jsonl");
  CHECK(run("stale", "residue:report=" + path, dir).exit_status == 66);
  CHECK(run("residue", "residue:report=" + path, dir).exit_status == 66);
  const auto lines = json_lines(path);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0].at("kind").as_string() == "stale-read");
  CHECK(lines[1].at("type").as_string() == "summary");
  CHECK(lines[2].at("kind").as_string() == "residue");
  CHECK(lines[3].at("type").as_string() == "summary");
  CHECK(lines[1].at("pid").as_int64() != lines[3].at("pid").as_int64());
}

namespace {

/// Every artifact location of a SARIF log's results, as "uriBaseId|uri".
std::vector<std::string> artifact_locations(const json::object& log) {
  std::vector<std::string> out;
  for (const auto& result : log.at("runs").as_array()[0].at("results").as_array()) {
    for (const char* key : {"locations", "relatedLocations"}) {
      for (const auto& location : result.at(key).as_array()) {
        const auto& artifact = location.at("physicalLocation").at("artifactLocation").as_object();
        const auto* base = artifact.if_contains("uriBaseId");
        out.push_back((base != nullptr ? std::string(base->as_string()) : std::string()) + "|" +
                      std::string(artifact.at("uri").as_string()));
      }
    }
  }
  return out;
}

/// The nearest directory above `file` holding a `.git`, with a trailing '/'.
std::string git_root_of(const std::filesystem::path& file) {
  for (auto dir = file.parent_path(); dir != dir.parent_path(); dir = dir.parent_path()) {
    if (std::filesystem::exists(dir / ".git")) return dir.string() + "/";
  }
  return {};
}

/// Sets or unsets an environment variable for a scope.
struct env_override {
  std::string name;
  std::optional<std::string> saved;
  env_override(std::string n, const char* value) : name(std::move(n)) {
    if (const char* old = std::getenv(name.c_str())) saved = old;
    if (value != nullptr) {
      ::setenv(name.c_str(), value, 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  ~env_override() {
    if (saved) {
      ::setenv(name.c_str(), saved->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
};

/// Runs the child from `cwd` (then comes back): ctest runs tests from the
/// build directory, a developer from anywhere.
child_result run_from(const std::filesystem::path& cwd, const std::string& scenario,
                      const std::string& diagnostics, const scratch_dir& dir) {
  const auto back = std::filesystem::current_path();
  std::filesystem::current_path(cwd);
  auto result = run(scenario, diagnostics, dir);
  std::filesystem::current_path(back);
  return result;
}

}  // namespace

TEST_CASE("report=...sarif: locations relative to %SRCROOT%, the same from any working directory") {
  env_override no_workspace("GITHUB_WORKSPACE", nullptr);  // the git root decides here
  scratch_dir dir;
  const std::filesystem::path source_dir = CTXPOOL_SOURCE_DIR;
  const std::string root = git_root_of(source_dir / "CMakeLists.txt");
  std::vector<std::vector<std::string>> seen;
  int n = 0;
  for (const std::filesystem::path& cwd :
       {std::filesystem::current_path(), std::filesystem::path(dir.file("")),
        std::filesystem::path("/")}) {
    CAPTURE(cwd);
    const auto path = dir.file("from" + std::to_string(n++) + ".sarif");
    CHECK(run_from(cwd, "both", "residue:report=" + path, dir).exit_status == 66);
    const auto log = json::parse(ctxpool_test::read_file(path)).as_object();
    seen.push_back(artifact_locations(log));
    REQUIRE_FALSE(seen.back().empty());
    const auto& run0 = log.at("runs").as_array()[0].as_object();
    const auto child_source = source_dir / "tests/diagnostics/diagnostics_child.cpp";
    if (root.empty()) {
      // Not a git checkout: no root, but still the same from everywhere.
      CHECK(run0.if_contains("originalUriBaseIds") == nullptr);
    } else {
      CHECK(run0.at("originalUriBaseIds").at("%SRCROOT%").at("uri").as_string() ==
            "file://" + root);
      CHECK(seen.back()[0] ==
            "%SRCROOT%|" + std::filesystem::relative(child_source, root).string());
    }
  }
  CHECK(seen[1] == seen[0]);
  CHECK(seen[2] == seen[0]);
}

TEST_CASE("report=...sarif with srcroot=: locations relative to the given directory") {
  scratch_dir dir;
  const auto tests_dir = std::filesystem::path(CTXPOOL_SOURCE_DIR) / "tests";
  const auto path = dir.file("srcroot.sarif");
  CHECK(run_from("/", "both", "residue:srcroot=" + tests_dir.string() + ":report=" + path, dir)
            .exit_status == 66);
  const auto log = json::parse(ctxpool_test::read_file(path)).as_object();
  CHECK(
      log.at("runs").as_array()[0].at("originalUriBaseIds").at("%SRCROOT%").at("uri").as_string() ==
      "file://" + tests_dir.string() + "/");
  CHECK(artifact_locations(log)[0] == "%SRCROOT%|diagnostics/diagnostics_child.cpp");
}
