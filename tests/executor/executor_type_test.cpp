// Tests of the pool's Asio executor (<ctxpool/executor.hpp>): handlers
// posted, dispatched or deferred through it, strands, timers, Asio's
// executor concept and queries, and bind_context.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/defer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

namespace asio = boost::asio;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::context_var<int> counter{"counter", 0};
ctxpool::thread_local_var<std::string> auth_token{"auth_token"};

}  // namespace

TEST_CASE("a handler run through the executor continues its scheduler's context") {
  // Unlike submit/post, Asio handlers continue the logical context that
  // scheduled them: a token made there can be reset inside, and the reset
  // stays inside the handler.
  ctxpool::thread_pool pool{1};
  ctxpool::context scheduler;  // keeps this test's set out of the thread's base context
  scheduler.run([&pool] {
    auto tok = request_id.set("scheduler");
    std::promise<std::string> after_reset;
    asio::post(pool.get_executor(), [&] {
      try {
        request_id.reset(tok);
        after_reset.set_value(request_id.get_or("unset"));
      } catch (const ctxpool::token_error& e) {
        after_reset.set_value(std::string("token_error: ") + e.what());
      }
    });
    CHECK(after_reset.get_future().get() == "unset");
    CHECK(request_id.get() == "scheduler");  // the scheduler's own context is untouched
  });
}

TEST_CASE("asio::post, dispatch and defer through the executor propagate the context") {
  ctxpool::thread_pool pool{2};
  auto executor = pool.get_executor();
  ctxpool::set_scope scope(request_id, "asio");
  std::promise<std::string> posted, dispatched, deferred;
  asio::post(executor, [&] { posted.set_value(request_id.get()); });
  asio::dispatch(executor, [&] { dispatched.set_value(request_id.get()); });
  asio::defer(executor, [&] { deferred.set_value(request_id.get()); });
  CHECK(posted.get_future().get() == "asio");
  CHECK(dispatched.get_future().get() == "asio");
  CHECK(deferred.get_future().get() == "asio");
}

TEST_CASE("a handler's sets do not leak into the next handler on the same worker") {
  ctxpool::thread_pool pool{1};
  auto executor = pool.get_executor();
  std::promise<void> first_done;
  asio::post(executor, [&] {
    auto tok = request_id.set("handler-1");
    (void)tok;
    auth_token.set("handler-1-secret");
    first_done.set_value();
  });
  first_done.get_future().wait();
  std::promise<std::pair<std::string, bool>> second;
  asio::post(executor, [&] {
    second.set_value({request_id.get_or("unset"), auth_token.has_value()});
  });
  const auto [value, has_token] = second.get_future().get();
  CHECK(value == "unset");
  CHECK_FALSE(has_token);
}

TEST_CASE("a strand runs each handler in the context of the code that posted it") {
  ctxpool::thread_pool pool{2};
  auto strand = asio::make_strand(pool.get_executor());
  std::atomic<int> mismatches{0};
  std::atomic<int> ran{0};
  std::promise<void> release;
  auto gate = release.get_future().share();
  // Keep the strand busy so that later handlers queue behind the first.
  asio::post(strand, [gate] { gate.wait(); });
  for (int i = 0; i < 100; ++i) {
    ctxpool::set_scope scope(counter, i);
    asio::post(strand, [i, &mismatches, &ran] {
      if (counter.get() != i) ++mismatches;
      auto tok = counter.set(-1);  // must not reach the next handler
      (void)tok;
      ++ran;
    });
  }
  release.set_value();
  pool.wait();
  CHECK(ran == 100);
  CHECK(mismatches == 0);
}

TEST_CASE("a strand of the pool serialises its handlers and answers Asio's queries") {
  ctxpool::thread_pool pool{2};
  auto strand = asio::make_strand(pool.get_executor());
  static_assert(asio::execution::is_executor<decltype(strand)>::value);
  asio::any_io_executor any = strand;  // what a coroutine on the strand holds
  (void)any;
  CHECK(strand == strand);
  CHECK(strand != asio::make_strand(pool.get_executor()));
  CHECK(&asio::query(strand, asio::execution::context) ==
        &asio::query(pool.get_executor(), asio::execution::context));
  std::optional tracked = asio::prefer(strand, asio::execution::outstanding_work.tracked);
  CHECK(asio::query(*tracked, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.tracked);
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> not_in_strand{0};
  for (int i = 0; i < 2000; ++i) {
    asio::post(i % 2 == 0 ? strand : *tracked, [&] {
      if (inside.fetch_add(1) != 0) ++overlaps;
      if (!strand.running_in_this_thread()) ++not_in_strand;
      inside.fetch_sub(1);
    });
  }
  tracked.reset();  // a tracked executor is outstanding work: wait() would wait for it
  pool.wait();
  CHECK(overlaps == 0);
  CHECK(not_in_strand == 0);
  CHECK_FALSE(strand.running_in_this_thread());
}

TEST_CASE("the executor satisfies Asio's executor concept and queries") {
  ctxpool::thread_pool pool{3};
  auto executor = pool.get_executor();
  static_assert(asio::execution::is_executor<ctxpool::thread_pool::executor_type>::value);
  asio::any_io_executor any = executor;  // the type every Asio I/O object takes
  CHECK(&asio::query(executor, asio::execution::context) ==
        &asio::query(any, asio::execution::context));
  CHECK(asio::query(executor, asio::execution::blocking) == asio::execution::blocking.possibly);
  auto never = asio::require(executor, asio::execution::blocking.never);
  CHECK(asio::query(never, asio::execution::blocking) == asio::execution::blocking.never);
  CHECK(asio::query(executor, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.untracked);
  auto tracked = asio::prefer(executor, asio::execution::outstanding_work.tracked);
  CHECK(asio::query(tracked, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.tracked);
  CHECK(asio::query(asio::require(executor, asio::execution::relationship.continuation),
                    asio::execution::relationship) == asio::execution::relationship.continuation);
  CHECK(asio::query(executor, asio::execution::occupancy) == 3);
  CHECK(executor == pool.get_executor());
  CHECK(executor != never);
  CHECK_FALSE(executor.running_in_this_thread());
  CHECK(pool.submit([executor] { return executor.running_in_this_thread(); }).get());
}

TEST_CASE("a tracked executor carries the context it was made in") {
  ctxpool::thread_pool pool{2};
  std::optional<decltype(asio::prefer(pool.get_executor(),
                                      asio::execution::outstanding_work.tracked))>
      tracked;
  {
    ctxpool::set_scope scope(request_id, "captured-at-prefer");
    tracked.emplace(asio::prefer(pool.get_executor(), asio::execution::outstanding_work.tracked));
  }
  ctxpool::set_scope later(request_id, "current-at-execute");
  std::promise<std::string> seen;
  asio::post(*tracked, [&seen] { seen.set_value(request_id.get()); });
  CHECK(seen.get_future().get() == "captured-at-prefer");
  tracked.reset();
}

TEST_CASE("a steady_timer on the pool's executor completes in the context that started the wait") {
  ctxpool::thread_pool pool{2};
  asio::steady_timer timer(pool.get_executor(), std::chrono::milliseconds(5));
  std::promise<std::string> seen;
  {
    ctxpool::set_scope scope(request_id, "timer-waiter");
    timer.async_wait([&seen](boost::system::error_code) { seen.set_value(request_id.get()); });
  }
  CHECK(seen.get_future().get() == "timer-waiter");
}

TEST_CASE("bind_context runs a handler on a foreign io_context in the bound context") {
  asio::io_context foreign;
  auto work = asio::make_work_guard(foreign);
  std::thread runner([&foreign] { foreign.run(); });

  std::promise<std::string> seen;
  std::promise<std::string> unbound;
  {
    ctxpool::set_scope scope(request_id, "bound");
    asio::post(foreign, ctxpool::bind_context([&seen] { seen.set_value(request_id.get()); }));
    asio::post(foreign, [&unbound] { unbound.set_value(request_id.get_or("foreign-thread")); });
  }
  CHECK(seen.get_future().get() == "bound");
  CHECK(unbound.get_future().get() == "foreign-thread");

  // A timer completion: the handler's own sets stay in the handler.
  asio::steady_timer timer(foreign, std::chrono::milliseconds(1));
  std::promise<std::string> timer_seen;
  auto tok = request_id.set("timer-bound");
  timer.async_wait(ctxpool::bind_context([&timer_seen, &tok](boost::system::error_code) {
    request_id.reset(tok);  // a continuation: the binder's token is valid here
    timer_seen.set_value(request_id.get_or("reset"));
  }));
  CHECK(timer_seen.get_future().get() == "reset");
  CHECK(request_id.get_or("x") == "timer-bound");  // the caller's context is untouched
  work.reset();
  runner.join();
}

TEST_CASE("bind_context keeps the handler's associated executor and allocator") {
  asio::io_context foreign;
  auto strand = asio::make_strand(foreign);
  auto bound = ctxpool::bind_context(asio::bind_executor(strand, [] {}));
  CHECK(asio::get_associated_executor(bound) == strand);
  auto plain = ctxpool::bind_context([] {});
  CHECK(asio::get_associated_executor(plain, foreign.get_executor()) == foreign.get_executor());
  static_assert(
      std::is_same_v<asio::associated_allocator_t<decltype(plain)>, std::allocator<void>>);
}
