// Tests of the finding kinds' table (diagnostics/src/finding_kinds.hpp): every
// list and per-kind choice the user sees follows from one row per kind.
//
// A new kind needs no edit here: the cases iterate the table, so a row that
// a reporter or the parser ignored would fail. example_kind/ proves it with
// a kind added by a patch (an enumerator and a row) and this file compiled
// against the patched library.
#include "finding_kinds.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <ctxpool/diagnostics/findings.hpp>
#include <ctxpool/diagnostics/options.hpp>

#include "report.hpp"

namespace diag = ctxpool::diagnostics;
namespace detail = ctxpool::diagnostics::detail;

namespace {

diag::finding example_of(diag::finding_kind kind) {
  diag::finding f;
  f.kind = kind;
  f.variable = "auth_token";
  f.type = "std::string";
  f.task = {7, "reader", std::source_location::current()};
  f.writer = {3, "writer", std::source_location::current()};
  f.site = std::source_location::current();
  f.write_site = std::source_location::current();
  f.left_dirty = 1;
  return f;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("every finding kind has one row, in enumerator order, with distinct names") {
  std::set<std::string_view> names;
  std::set<std::string_view> rule_names;
  std::size_t index = 0;
  for (const detail::kind_info& k : detail::kind_table()) {
    CAPTURE(k.name);
    CHECK(static_cast<std::size_t>(k.kind) == index++);
    CHECK(&detail::info_of(k.kind) == &k);
    CHECK(diag::to_string(k.kind) == k.name);
    CHECK(names.insert(k.name).second);
    CHECK(rule_names.insert(k.sarif_name).second);
    CHECK((k.level == "error" || k.level == "warning"));
  }
  CHECK(index >= 5);
}

TEST_CASE("the suppression parser and matcher accept every kind's name and group") {
  for (const detail::kind_info& k : detail::kind_table()) {
    CAPTURE(k.name);
    const auto rules = diag::parse_suppressions(std::string(k.name) + ":x\n");
    REQUIRE(rules.size() == 1);
    CHECK(rules[0].kind == k.name);
    CHECK(detail::kind_matches(k.name, k.kind));
    CHECK(detail::kind_matches("*", k.kind));
    if (!k.group.empty()) {
      CHECK(diag::parse_suppressions(std::string(k.group) + ":x\n").size() == 1);
      CHECK(detail::kind_matches(k.group, k.kind));
    }
    // Another kind's name does not cover it.
    for (const detail::kind_info& other : detail::kind_table()) {
      if (other.kind != k.kind) CHECK_FALSE(detail::kind_matches(other.name, k.kind));
    }
    CHECK(detail::suppression_kinds_list().find(k.name) != std::string::npos);
  }
  CHECK_THROWS_AS((void)diag::parse_suppressions("no-such-kind:x\n"), diag::config_error);
}

TEST_CASE("every kind reaches the stderr block, the SUMMARY line and both reports") {
  detail::run_summary run;
  for (const detail::kind_info& k : detail::kind_table())
    run.findings.push_back(example_of(k.kind));

  const std::string summary = detail::format_summary(run);
  const std::string sarif_path = "/tmp/diag-kinds-test.sarif";
  const std::string json_path = "/tmp/diag-kinds-test.json";
  std::remove(sarif_path.c_str());
  std::remove(json_path.c_str());
  REQUIRE(detail::write_report(sarif_path, diag::report_format::sarif, "/", run));
  REQUIRE(detail::write_report(json_path, diag::report_format::json, "/", run));
  const std::string sarif = slurp(sarif_path);
  const std::string json = slurp(json_path);
  std::remove(sarif_path.c_str());
  std::remove(json_path.c_str());

  for (const detail::kind_info& k : detail::kind_table()) {
    CAPTURE(k.name);
    const std::string block = diag::format_finding(example_of(k.kind));
    CHECK(block.find("==ERROR: ctxpool: " + std::string(k.name)) != std::string::npos);
    CHECK(block.find("(suppressions file line to silence this: ") != std::string::npos);
    CHECK(summary.find("SUMMARY: ctxpool: " + std::string(k.name) + ": 1 finding(s)") !=
          std::string::npos);
    CHECK(sarif.find(R"({"id":")" + std::string(k.name) + R"(","name":")" +
                     std::string(k.sarif_name) + "\"") != std::string::npos);
    CHECK(sarif.find(R"("ruleId":")" + std::string(k.name) + "\"") != std::string::npos);
    CHECK(json.find(R"("kind":")" + std::string(k.name) + "\"") != std::string::npos);
    CHECK(json.find("\"" + std::string(k.name) + R"(":{"findings":1,)") != std::string::npos);
  }
}
