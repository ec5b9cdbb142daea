// Tests of <ctxpool/diagnostics/options.hpp>: the CTXPOOL_DIAGNOSTICS syntax,
// suppressions files, and every misconfiguration being a clear error.
#include <ctxpool/diagnostics/options.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include <ctxpool/diagnostics.hpp>

#include "support.hpp"

namespace diag = ctxpool::diagnostics;

namespace {

/// The message of the config_error that parsing `spec` throws.
std::string error_of(std::string_view spec) {
  try {
    (void)diag::parse_options(spec);
  } catch (const diag::config_error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("empty and 'off' mean off") {
  CHECK(diag::parse_options("").mode == diag::mode::off);
  CHECK(diag::parse_options("off").mode == diag::mode::off);
}

TEST_CASE("'residue' alone gives the defaults") {
  const auto opts = diag::parse_options("residue");
  CHECK(opts.mode == diag::mode::residue);
  CHECK(opts.exitcode == 66);
  CHECK_FALSE(opts.halt_on_error);
  CHECK(opts.report_path.empty());
  CHECK(opts.suppressions_path.empty());
  CHECK_FALSE(opts.leaks);
}

TEST_CASE("every option parses") {
  const auto opts = diag::parse_options(
      "residue:exitcode=3:halt_on_error=1:report=/tmp/r.json:format=sarif:suppressions=s.txt:"
      "leaks=1");
  CHECK(opts.exitcode == 3);
  CHECK(opts.halt_on_error);
  CHECK(opts.report_path == "/tmp/r.json");
  CHECK(opts.format == diag::report_format::sarif);
  CHECK(opts.suppressions_path == "s.txt");
  CHECK(opts.leaks);
  CHECK(diag::parse_options("residue:exitcode=0").exitcode == 0);
  CHECK(diag::parse_options("residue:exitcode=255").exitcode == 255);
  CHECK_FALSE(diag::parse_options("residue:halt_on_error=0").halt_on_error);
  CHECK(diag::parse_options("residue").thread_locals);  // plain thread_locals on by default
  CHECK_FALSE(diag::parse_options("residue:thread_locals=0").thread_locals);
  CHECK_THROWS_WITH_AS((void)diag::parse_options("residue:thread_locals=no"),
                       doctest::Contains("malformed value 'no'"), diag::config_error);
}

TEST_CASE("the report format follows the file name unless given") {
  CHECK(diag::parse_options("residue:report=out.sarif").format == diag::report_format::sarif);
  CHECK(diag::parse_options("residue:report=out.jsonl").format == diag::report_format::json);
  CHECK(diag::parse_options("residue:report=out.txt:format=text").format ==
        diag::report_format::text);
  CHECK(diag::parse_options("residue:report=out.sarif:format=json").format ==
        diag::report_format::json);
}

TEST_CASE("a later option overrides an earlier one") {
  CHECK(diag::parse_options("residue:exitcode=3:exitcode=4").exitcode == 4);
}

TEST_CASE("unknown mode is an error naming it") {
  const auto message = error_of("residu");
  CHECK(contains(message, "unknown mode 'residu'"));
  CHECK(contains(error_of("on"), "unknown mode 'on'"));
  CHECK(contains(error_of("RESIDUE"), "unknown mode"));
}

TEST_CASE("unknown option is an error naming it and listing the known ones") {
  const auto message = error_of("residue:exit_code=3");
  CHECK(contains(message, "unknown option 'exit_code'"));
  CHECK(contains(message, "exitcode"));
  CHECK(contains(error_of("residue:halt_on_eror=1"), "'halt_on_eror'"));
}

TEST_CASE("malformed numbers are errors naming the option and the value") {
  CHECK(contains(error_of("residue:exitcode=abc"), "option 'exitcode' has malformed value 'abc'"));
  CHECK(contains(error_of("residue:exitcode="), "'exitcode'"));
  CHECK(contains(error_of("residue:exitcode=6x"), "'6x'"));
  CHECK(contains(error_of("residue:exitcode=-1"), "'-1'"));
  CHECK(contains(error_of("residue:exitcode=256"), "0 to 255"));
  CHECK(
      contains(error_of("residue:halt_on_error=yes"), "'halt_on_error' has malformed value 'yes'"));
  CHECK(contains(error_of("residue:leaks=2"), "'leaks'"));
  CHECK(contains(error_of("residue:format=xml"), "'format' has malformed value 'xml'"));
}

TEST_CASE("structural mistakes are errors") {
  CHECK(contains(error_of("residue:exitcode"), "has no value"));
  CHECK(contains(error_of("residue::exitcode=1"), "empty option"));
  CHECK(contains(error_of("residue:"), "empty option"));
  CHECK(contains(error_of("residue:report="), "'report' needs a path"));
  CHECK(contains(error_of("residue:suppressions="), "'suppressions' needs a file"));
  CHECK(contains(error_of("residue:format=json"), "needs 'report=PATH'"));
  CHECK(contains(error_of("off:exitcode=1"), "mode 'off'"));
}

TEST_CASE("config_error is an invalid_argument") {
  CHECK_THROWS_AS((void)diag::parse_options("bogus"), std::invalid_argument);
}

TEST_CASE("suppressions: kind:pattern lines, comments and blanks") {
  const auto rules = diag::parse_suppressions(
      "# known issues\n"
      "stale-read:auth_*   # tracked in #12\n"
      "\n"
      "  residue : legacy_*.cpp\n"
      "leak:*\n"
      "*:vendor/*\n");
  REQUIRE(rules.size() == 4);
  CHECK(rules[0].kind == "stale-read");
  CHECK(rules[0].pattern == "auth_*");
  CHECK(rules[1].kind == "residue");
  CHECK(rules[1].pattern == "legacy_*.cpp");
  CHECK(rules[2].kind == "leak");
  CHECK(rules[3].kind == "*");
}

TEST_CASE("suppressions: the new kinds, read-across-suspension and thread-cache declarations") {
  const auto rules = diag::parse_suppressions(
      "read-across-suspension:request_*\n"
      "thread-cache:rng\n"
      "thread-cache:vendor::*scratch*\n");
  REQUIRE(rules.size() == 3);
  CHECK(rules[0].kind == "read-across-suspension");
  CHECK(rules[1].kind == "thread-cache");
  CHECK(rules[1].pattern == "rng");
  CHECK(rules[2].pattern == "vendor::*scratch*");
}

TEST_CASE("suppressions: bad lines are errors with file and line") {
  auto error = [](std::string_view text) {
    try {
      (void)diag::parse_suppressions(text, "supp.txt");
    } catch (const diag::config_error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK(contains(error("stale-read:a\nno colon here\n"), "supp.txt:2:"));
  CHECK(contains(error("stale_read:a\n"), "unknown kind 'stale_read'"));
  CHECK(contains(error("residue:\n"), "empty pattern"));
}

TEST_CASE("enable: a missing suppressions file is an error naming it") {
  diag::disable();  // a failed enable leaves the previous state as it was
  diag::options opts;
  opts.suppressions_path = "/nonexistent/ctxpool-suppressions.txt";
  try {
    diag::enable(opts);
    FAIL("enable accepted a missing suppressions file");
  } catch (const diag::config_error& e) {
    CHECK(contains(e.what(), "/nonexistent/ctxpool-suppressions.txt"));
  }
  CHECK_FALSE(diag::enabled());
}

TEST_CASE("enable: a malformed suppressions file is an error naming the line") {
  diag::disable();  // a failed enable leaves the previous state as it was
  ctxpool_test::scratch_dir dir;
  const auto path = dir.file("supp.txt");
  std::ofstream(path) << "stale-read:ok\nnonsense\n";
  diag::options opts;
  opts.suppressions_path = path;
  try {
    diag::enable(opts);
    FAIL("enable accepted a malformed suppressions file");
  } catch (const diag::config_error& e) {
    CHECK(contains(e.what(), path + ":2:"));
  }
  CHECK_FALSE(diag::enabled());
}

TEST_CASE("enable: an unwritable report path is an error naming it") {
  diag::disable();  // a failed enable leaves the previous state as it was
  diag::options opts;
  opts.report_path = "/nonexistent-dir/report.json";
  try {
    diag::enable(opts);
    FAIL("enable accepted an unwritable report path");
  } catch (const diag::config_error& e) {
    CHECK(contains(e.what(), "cannot write report '/nonexistent-dir/report.json'"));
  }
  CHECK_FALSE(diag::enabled());
}

TEST_CASE("enable with mode off switches detection off") {
  ctxpool_test::detection_session session;
  REQUIRE(diag::enabled());
  diag::options off;
  off.mode = diag::mode::off;
  diag::enable(off);
  CHECK_FALSE(diag::enabled());
}

TEST_CASE("enable: a failed enable leaves the options in force as they were") {
  diag::options first = ctxpool_test::detection_session::quiet();
  first.exitcode = 7;
  ctxpool_test::detection_session session(first);
  diag::options bad;
  bad.report_path = "/nonexistent-dir/report.json";
  CHECK_THROWS_AS(diag::enable(bad), diag::config_error);
  CHECK(diag::enabled());
  CHECK(diag::current_options().exitcode == 7);
}
