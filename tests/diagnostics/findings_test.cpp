// Tests of <ctxpool/diagnostics/findings.hpp>: reading and withdrawing
// findings, their text, and leak accounting.
#include <ctxpool/diagnostics/findings.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <source_location>
#include <string>
#include <thread>

#include <ctxpool/context.hpp>
#include <ctxpool/diagnostics.hpp>
#include <ctxpool/thread_local.hpp>

#include "support.hpp"

namespace diag = ctxpool::diagnostics;
using ctxpool_test::detection_session;
using ctxpool_test::worker;

namespace {

ctxpool::thread_local_var<std::string> session_id{"session_id"};
ctxpool::context_var<std::string> request_user{"request_user"};

void make_stale_read(worker& w) {
  w.run("writer", [] { session_id.set("s"); });
  w.run("reader", [] { (void)session_id.has_value(); });
}

std::size_t count_kind(const std::vector<diag::finding>& all, diag::finding_kind kind) {
  std::size_t n = 0;
  for (const auto& f : all) n += f.kind == kind ? 1 : 0;
  return n;
}

detection_session leak_session() {
  auto opts = detection_session::quiet();
  opts.leaks = true;
  return detection_session(opts);
}

}  // namespace

TEST_CASE("kind names") {
  CHECK(diag::to_string(diag::finding_kind::stale_read) == "stale-read");
  CHECK(diag::to_string(diag::finding_kind::residue) == "residue");
  CHECK(diag::to_string(diag::finding_kind::leaked_value) == "leaked-value");
  CHECK(diag::to_string(diag::finding_kind::leaked_context) == "leaked-context");
}

TEST_CASE("finding_mark and take_findings_since take only what came after the mark") {
  detection_session session;
  worker w;
  make_stale_read(w);
  const auto mark = diag::finding_mark();
  CHECK(diag::take_findings_since(mark).empty());
  CHECK(diag::findings().size() == 1);
  make_stale_read(w);  // the same finding again: counts as after the mark
  const auto taken = diag::take_findings_since(mark);
  REQUIRE(taken.size() == 1);
  CHECK(taken.front().count == 2);
  CHECK(diag::findings().empty());
}

TEST_CASE("format_finding names kind, variable, type, tasks and thread") {
  diag::finding f;
  f.kind = diag::finding_kind::residue;
  f.variable = "tls_user";
  f.type = "int";
  f.task = {12, "handler", std::source_location::current()};
  f.thread = 3;
  f.worker = 1;
  const auto text = diag::format_finding(f);
  CHECK(text.find("ERROR: ctxpool: residue in watched thread_local 'tls_user' (int)") !=
        std::string::npos);
  CHECK(text.find("thread T3 (worker 1)") != std::string::npos);
  CHECK(text.find("task #12 \"handler\"") != std::string::npos);
  CHECK(text.find("findings_test.cpp") != std::string::npos);
}

TEST_CASE("leaks: a context kept alive past the task that created it") {
  auto session = leak_session();
  worker w;
  std::unique_ptr<ctxpool::context> kept;
  w.run("keeps-context", [&] {
    (void)request_user.set("alice");
    kept = std::make_unique<ctxpool::context>(ctxpool::copy_context());
  });
  diag::check_leaks();
  const auto found = diag::findings();
  CHECK(count_kind(found, diag::finding_kind::leaked_context) == 1);
  // The value is held by the live context: explained, not a leak.
  CHECK(count_kind(found, diag::finding_kind::leaked_value) == 0);
  for (const auto& f : found) {
    if (f.kind == diag::finding_kind::leaked_context) CHECK(f.task.name == "keeps-context");
  }
  diag::clear_findings();
  kept.reset();
  diag::check_leaks();
  CHECK(diag::findings().empty());
}

TEST_CASE("leaks: a value held by nothing but a token") {
  auto session = leak_session();
  worker w;
  std::optional<ctxpool::token<std::string>> kept_token;
  w.run("keeps-token", [&] {
    (void)request_user.set("first");
    // The token of the second set holds the value it replaced, "first".
    kept_token.emplace(request_user.set("second"));
  });
  // The task's context is gone, so "first" is held only by the token.
  diag::check_leaks();
  const auto found = diag::findings();
  REQUIRE(count_kind(found, diag::finding_kind::leaked_value) == 1);
  for (const auto& f : found) {
    if (f.kind != diag::finding_kind::leaked_value) continue;
    CHECK(f.variable == "request_user");
    CHECK(f.type == "std::string");
    CHECK(f.task.name == "keeps-token");
  }
  diag::clear_findings();
  kept_token.reset();
  diag::check_leaks();
  CHECK(diag::findings().empty());
}

TEST_CASE("leaks: nothing to report when tasks let go of everything") {
  auto session = leak_session();
  worker w;
  for (int i = 0; i < 3; ++i) {
    w.run("clean", [] {
      auto token = request_user.set("u");
      auto snapshot = ctxpool::copy_context();
      CHECK(snapshot.get(request_user) == "u");
      request_user.reset(token);
    });
  }
  diag::check_leaks();
  CHECK(diag::findings().empty());
}

TEST_CASE("taken findings no longer count for the exit status, but a later occurrence is new") {
  detection_session session;
  worker w;
  auto login = [] { session_id.set("s"); };
  auto reader = [] { (void)session_id.has_value(); };
  const auto site = std::source_location::current();
  w.run("writer", login, site);
  w.run("reader", reader, site);
  const auto mark = diag::finding_mark();
  CHECK(diag::take_findings_since(mark).empty());  // nothing after the mark
  w.run("reader", reader, site);                   // a repeat after the mark
  const auto taken = diag::take_findings_since(mark);
  REQUIRE(taken.size() == 1);
  CHECK(taken.front().count == 2);  // the occurrences so far, as a guard reports them
  CHECK(diag::findings().empty());
  w.run("reader", reader, site);
  REQUIRE(diag::findings().size() == 1);
  CHECK(diag::findings().front().count == 1);  // counted from the take
}

TEST_CASE("unobserved_tasks counts task scopes no task observer announced") {
  detection_session session;
  const auto before = diag::unobserved_tasks();
  worker w;
  w.run("observed", [] {});  // a task_scope: announced
  CHECK(diag::unobserved_tasks() == before);
  std::thread bare([] {
    ctxpool::slot_wipe_scope slots;  // what a pool built while detection was off does
  });
  bare.join();
  CHECK(diag::unobserved_tasks() == before + 1);
}

TEST_CASE("CTXPOOL_THREAD_CACHE names match discovered names, qualified or not") {
  CHECK(diag::thread_cache_name_matches("rng", "rng"));
  CHECK(diag::thread_cache_name_matches("rng", "app::rng"));
  CHECK(diag::thread_cache_name_matches("rng", "make_id()::rng"));
  CHECK(diag::thread_cache_name_matches("app::rng", "app::rng"));
  CHECK_FALSE(diag::thread_cache_name_matches("rng", "app::my_rng"));
  CHECK_FALSE(diag::thread_cache_name_matches("rng", "rng2"));
  CHECK_FALSE(diag::thread_cache_name_matches("app::rng", "rng"));
}
