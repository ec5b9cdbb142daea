// The worked example of adding a finding kind, compiled: new_kind.patch adds
// the kind "missing-request-id" to the library (its enumerator in
// findings.hpp and its row in finding_kinds.cpp, nothing else), and the
// function below is its detection code. This program is built against a copy
// of the diagnostics layer with the patch applied (see CMakeLists.txt), with
// finding_kinds_test.cpp beside it: that file's table-driven cases then cover
// the new row (names, suppression parser, stderr block, SUMMARY line, SARIF
// rule, JSON counts) without an edit, and the cases here check that the new
// kind's findings flow as the built-in ones do. If the patch stops applying
// (the table moved), the build fails: the example cannot go stale.
#include <doctest/doctest.h>

#include <mutex>
#include <string>

#include <ctxpool/context.hpp>
#include <ctxpool/diagnostics.hpp>
#include <ctxpool/diagnostics/findings.hpp>
#include <ctxpool/diagnostics/task_scope.hpp>

#include "../support.hpp"
#include "finding_kinds.hpp"
#include "finding_store.hpp"
#include "session.hpp"
#include "task_identity.hpp"

namespace diag = ctxpool::diagnostics;
namespace detail = ctxpool::diagnostics::detail;
using ctxpool_test::detection_session;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};

// The detection code of the new kind: called where a task starts its real
// work, it records a finding when the task's context carries no request id.
// Recording says whether halt_on_error asks to stop; the caller stops.
void check_request_id() {
  const detail::frame* task = detail::current_frame();
  if (!diag::enabled() || task == nullptr || !request_id.get_or("").empty()) return;
  diag::finding f;
  f.kind = diag::finding_kind::missing_request_id;
  f.variable = "request_id";
  f.task = detail::ref_of(task);
  f.site = task->submit_site;
  detail::finding_store& store = detail::the_store();
  bool halt = false;
  {
    std::lock_guard lock(store.mutex);
    halt = detail::record_locked(store, std::move(f)).halt;
  }
  if (halt) detail::halt_run();
}

std::size_t count_missing(const std::vector<diag::finding>& all) {
  std::size_t n = 0;
  for (const diag::finding& f : all) n += f.kind == diag::finding_kind::missing_request_id ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("the patch added exactly one row, at the end of the table") {
  const auto table = detail::kind_table();
  REQUIRE(table.size() == 6);
  CHECK(table.back().kind == diag::finding_kind::missing_request_id);
  CHECK(diag::to_string(diag::finding_kind::missing_request_id) == "missing-request-id");
}

TEST_CASE("a task without a request id is a finding of the new kind, with its texts") {
  detection_session session;
  {
    diag::task_scope task{"handler"};
    check_request_id();
  }
  const auto all = diag::findings();
  REQUIRE(count_missing(all) == 1);
  const std::string block = diag::format_finding(all.front());
  INFO(block);
  CHECK(block.find("==ERROR: ctxpool: missing-request-id in task") != std::string::npos);
  CHECK(block.find("\"handler\"") != std::string::npos);
  CHECK(block.find("missing-request-id:request_id") != std::string::npos);  // the hint
}

TEST_CASE("a task with a request id, or code outside any task, is not") {
  detection_session session;
  check_request_id();  // no task
  {
    diag::task_scope task{"handler"};
    auto token = request_id.set("r-17");
    check_request_id();
    request_id.reset(token);
  }
  CHECK(count_missing(diag::findings()) == 0);
}

TEST_CASE("the same finding again is counted, not repeated") {
  detection_session session;
  for (int i = 0; i < 3; ++i) {
    diag::task_scope task{"handler"};
    check_request_id();
  }
  const auto all = diag::findings();
  REQUIRE(count_missing(all) == 1);
  CHECK(all.front().count == 3);
}

TEST_CASE("a suppressions line naming the new kind silences it") {
  auto opts = detection_session::quiet();
  opts.suppressions = diag::parse_suppressions("missing-request-id:request_id\n");
  detection_session session(opts);
  {
    diag::task_scope task{"handler"};
    check_request_id();
  }
  CHECK(count_missing(diag::findings()) == 0);
}
