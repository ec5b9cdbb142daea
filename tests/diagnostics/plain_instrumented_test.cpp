// The residue CI build: plain_shapes_child built with
// ctxpool_enable_residue_instrumentation (its shared library and its plugin
// too) and run under CTXPOOL_DIAGNOSTICS=residue with no watch mode set: the
// automatic choice takes the load/store callbacks, with no watchpoints, no
// instruction budget and no register limit. Every buggy shape exits 66 naming
// its variable and the read line in every run with 1 and 4 workers; every
// clean one exits 0. Also with perf_event_open refused (a container's seccomp
// profile): the instrumented build does not need it.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

ctxpool_test::child_result run(const std::vector<std::string>& command) {
  ctxpool_test::scratch_dir dir;
  std::vector<std::string> args(command.begin() + 1, command.end());
  return ctxpool_test::run_child(command.front(), args, "residue", dir);
}

/// "plain_shapes_child.cpp:<n>" where <n> is the line of the source that
/// contains `marker`: the read line a finding must name.
std::string read_line_of(const std::string& marker) {
  std::ifstream source(CTXPOOL_PLAIN_SHAPES_SOURCE);
  std::string line;
  for (int n = 1; std::getline(source, line); ++n) {
    if (line.find(marker) != std::string::npos)
      return "plain_shapes_child.cpp:" + std::to_string(n);
  }
  FAIL("no line of plain_shapes_child.cpp contains ", marker);
  return {};
}

constexpr int attempts = 3;

void check_every_run(const std::string& shape, const std::string& variable,
                     const std::string& read_site) {
  for (const int workers : {1, 4}) {
    for (int attempt = 0; attempt < attempts; ++attempt) {
      const auto result = run({CTXPOOL_PLAIN_INSTRUMENTED_CHILD, shape, std::to_string(workers)});
      INFO("shape ", shape, ", ", workers, " worker(s), run ", attempt, "\n", result.err);
      if (!variable.empty()) {
        REQUIRE(result.exit_status == 66);
        CHECK(result.err.find("stale-read of '" + variable + "' (plain thread_local") !=
              std::string::npos);
        CHECK(result.err.find(read_site) != std::string::npos);
        // The summary names the watcher and the watched variables.
        const auto summary = result.err.find("plain thread_locals (instrumented build): ");
        CHECK(summary != std::string::npos);
        CHECK(result.err.find("'" + variable + "'", summary) != std::string::npos);
      } else {
        REQUIRE(result.exit_status == 0);
        CHECK(result.err.find("ERROR: ctxpool") == std::string::npos);
      }
      // Never a notice that reads are not watched: the instrumented build watches them.
      CHECK(result.err.find("reads are not watched") == std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("instrumented: a raw std::string token left by one request, read by an anonymous one") {
  check_every_run("raw_token", "session_token", read_line_of("bool is_anonymous() {"));
}
TEST_CASE("instrumented: a raw int depth counter left incremented") {
  check_every_run("raw_depth", "call_depth", read_line_of("{\"raw_depth\""));
}
TEST_CASE("instrumented: a function-local static thread_local left set") {
  check_every_run("static_local", "current_route()::route",
                  read_line_of("else route_length_sink = current_route().size();"));
}
TEST_CASE("instrumented: the same bug in a hand-written std::thread pool with task_scope") {
  check_every_run("handwritten_pool", "session_token", read_line_of("bool is_anonymous() {"));
}
TEST_CASE("instrumented: a thread_local of a shared library of the program") {
  check_every_run("shared_library", "lib_requests", "plain_tls_lib.cpp:6 in lib_count_request");
}
TEST_CASE("instrumented: a read after 200,000 instructions of other work") {
  check_every_run("after_long_work", "session_token", read_line_of("bool is_anonymous() {"));
}
TEST_CASE("instrumented: a read after blocking in sleep, a pipe read and a contended mutex") {
  check_every_run("after_sleep", "session_token", read_line_of("bool is_anonymous() {"));
  check_every_run("after_pipe_read", "session_token", read_line_of("bool is_anonymous() {"));
  check_every_run("after_mutex", "session_token", read_line_of("bool is_anonymous() {"));
}
TEST_CASE("instrumented: a field at offset 64 of a thread_local struct") {
  check_every_run("struct_field", "request", read_line_of("bool is_anonymous_request() {"));
}
TEST_CASE("instrumented: a thread_local of a plugin dlopen'ed after the pool started") {
  check_every_run("dlopen_plugin", "plugin_state", "plain_tls_plugin.cpp:6 in plugin_get");
}
TEST_CASE("instrumented: a std::vector and a std::unordered_map left non-empty, then iterated") {
  check_every_run("vector_iterated", "pending_ids",
                  read_line_of("for (const int id : pending_ids)"));
  check_every_run("map_iterated", "header_counts",
                  read_line_of("for (const auto& [name, count] : header_counts)"));
}
TEST_CASE("instrumented: after 270 clean tasks, a write made only by uninstrumented code") {
  check_every_run("late_uninstrumented_write", "call_depth",
                  read_line_of("read_sink = call_depth;  // the late read"));
}
TEST_CASE("instrumented clean: written before read, assigned in libstdc++ before read, only read") {
  check_every_run("write_first", "", "");
  check_every_run("assign_then_read", "", "");
  check_every_run("read_only", "", "");
}
TEST_CASE("instrumented clean: a lazily initialised function-local static, a declared cache") {
  check_every_run("lazy_static_read", "", "");
  check_every_run("rng_cache", "", "");
}

TEST_CASE("instrumented: perf_event_open refused (a container's seccomp profile) changes nothing") {
  for (const int workers : {1, 4}) {
    const auto result = run({CTXPOOL_NO_PERF_EXEC, CTXPOOL_PLAIN_INSTRUMENTED_CHILD, "raw_token",
                             std::to_string(workers)});
    INFO(workers, " worker(s)\n", result.err);
    REQUIRE(result.exit_status == 66);
    CHECK(result.err.find("stale-read of 'session_token' (plain thread_local") !=
          std::string::npos);
    CHECK(result.err.find(read_line_of("bool is_anonymous() {")) != std::string::npos);
    CHECK(result.err.find("reads are not watched") == std::string::npos);
  }
}

#if defined(CTXPOOL_PLAIN_LIBRARIES_CHILD)
TEST_CASE("instrumented clean: protobuf arenas and abseil containers built without NDEBUG") {
  for (const int workers : {1, 4}) {
    const auto result = run({CTXPOOL_PLAIN_LIBRARIES_CHILD, std::to_string(workers)});
    INFO(workers, " worker(s)\n", result.err);
    CHECK(result.exit_status == 0);
    CHECK(result.err.find("ERROR: ctxpool") == std::string::npos);
  }
}
#endif

namespace {

/// The text of the finding's line that starts with `label` ("written at").
std::string line_after(const std::string& err, const std::string& label) {
  const std::size_t at = err.find(label);
  if (at == std::string::npos) return {};
  return err.substr(at, err.find('\n', at) - at);
}

}  // namespace

TEST_CASE("instrumented: the finding names the leaving task's write line, in text and SARIF") {
  struct shape {
    const char* name;
    std::string write_line;
  };
  const shape shapes[] = {
      {"raw_token", read_line_of("void login(int i) {")},  // a std::string assigned
      {"raw_depth", read_line_of("{\"raw_depth\"")},       // an int incremented
  };
  for (const shape& s : shapes) {
    for (const int workers : {1, 4}) {
      ctxpool_test::scratch_dir dir;
      const std::string sarif = dir.file("report.sarif");
      const auto result = ctxpool_test::run_child(CTXPOOL_PLAIN_INSTRUMENTED_CHILD,
                                                  {s.name, std::to_string(workers)},
                                                  "residue:report=" + sarif, dir);
      INFO("shape ", s.name, ", ", workers, " worker(s)\n", result.err);
      REQUIRE(result.exit_status == 66);
      const std::string written = line_after(result.err, "written at ");
      CHECK(written.find(s.write_line) != std::string::npos);
      CHECK(written.find("an unknown site") == std::string::npos);
      // The SARIF result's related location for the write: the same line.
      const std::string log = ctxpool_test::read_file(sarif);
      const std::string line_number = s.write_line.substr(s.write_line.rfind(':') + 1);
      const std::size_t related = log.find(R"("message":{"text":"written by task #)");
      REQUIRE(related != std::string::npos);
      const std::string start_line = R"("region":{"startLine":)";
      const std::size_t region = log.find(start_line, related);
      REQUIRE(region != std::string::npos);
      CHECK(log.compare(region + start_line.size(), line_number.size() + 1, line_number + "}") ==
            0);
    }
  }
}
