// Tests of <ctxpool/cancellation.hpp>: cancellation and deadlines carried by
// the context, inherited by snapshots and by cancellations made inside.
#include <ctxpool/cancellation.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/watchdog.hpp"

using namespace std::chrono_literals;
using ctxpool::cancel_reason;
using ctxpool::cancellation_scope;
using ctxpool::cancellation_source;
using ctxpool::deadline_clock;
namespace this_task = ctxpool::this_task;

namespace {

// Every test starts in an empty context, so none sees another's cancellation.
template <class F>
void isolated(F&& f) {
  ctxpool::context{}.run(std::forward<F>(f));
}

using ctxpool_test::
    hang_bound;  // the bound on every wait a broken implementation could make endless

}  // namespace

TEST_CASE("without a cancellation in the context nothing is cancelled and nothing throws") {
  isolated([] {
    CHECK_FALSE(this_task::cancelled());
    CHECK_NOTHROW(this_task::throw_if_cancelled());
    CHECK_FALSE(this_task::deadline().has_value());
    CHECK_FALSE(ctxpool::current_cancellation().can_be_cancelled());
  });
}

TEST_CASE(
    "cancel is seen inside the scope, throw_if_cancelled throws cancelled_error, and the scope ends") {
  isolated([] {
    cancellation_source source;
    {
      cancellation_scope scope(source);
      CHECK_FALSE(this_task::cancelled());
      source.cancel();
      CHECK(this_task::cancelled());
      CHECK(ctxpool::current_cancellation().reason() == cancel_reason::requested);
      CHECK_THROWS_AS(this_task::throw_if_cancelled(), ctxpool::cancelled_error);
      // A typed exception that generic handlers still catch.
      CHECK_THROWS_AS(this_task::throw_if_cancelled(), std::runtime_error);
    }
    CHECK_FALSE(this_task::cancelled());  // the scope is over: nothing carried
    CHECK(source.cancelled());
  });
}

TEST_CASE("a snapshot taken inside the scope carries the cancellation to another thread") {
  isolated([] {
    cancellation_source source;
    ctxpool::context snapshot = source.run([] { return ctxpool::copy_context(); });
    source.cancel();
    bool seen = false;
    std::thread([&] { seen = snapshot.run([] { return this_task::cancelled(); }); }).join();
    CHECK(seen);
  });
}

TEST_CASE("cancelling a parent cancels the children made inside it, not the other way round") {
  isolated([] {
    cancellation_source parent;
    cancellation_scope in_parent(parent);
    cancellation_source child;
    cancellation_source sibling;
    child.cancel();
    CHECK(child.cancelled());
    CHECK_FALSE(parent.cancelled());
    CHECK_FALSE(sibling.cancelled());
    parent.cancel();
    CHECK(sibling.cancelled());
    CHECK(sibling.token().reason() == cancel_reason::requested);
  });
}

TEST_CASE("a child's deadline is the earlier of its own and its parent's") {
  isolated([] {
    const auto soon = deadline_clock::now() + 1h;
    const auto later = soon + 1h;
    cancellation_source parent(soon);
    cancellation_scope in_parent(parent);
    CHECK(this_task::deadline() == soon);
    cancellation_source looser(later);  // cannot extend what it inherits
    CHECK(looser.token().deadline() == soon);
    cancellation_source tighter(soon - 30min);
    CHECK(tighter.token().deadline() == soon - 30min);
    cancellation_source none;  // no deadline of its own: the parent's
    CHECK(none.token().deadline() == soon);
  });
}

TEST_CASE("a passed deadline is a cancellation with reason deadline") {
  isolated([] {
    cancellation_source expired(deadline_clock::now() - 1ms);
    cancellation_scope scope(expired);
    CHECK(this_task::cancelled());
    CHECK(ctxpool::current_cancellation().reason() == cancel_reason::deadline);
    CHECK_THROWS_WITH_AS(this_task::throw_if_cancelled(), doctest::Contains("deadline"),
                         ctxpool::cancelled_error);
  });
}

TEST_CASE(
    "on_cancel runs once on cancel, at once when already cancelled, never after unregistering") {
  isolated([] {
    cancellation_source source;
    std::atomic<int> calls{0};
    std::atomic<int> dropped_calls{0};
    {
      auto dropped = source.token().on_cancel([&] { ++dropped_calls; });
    }
    auto registration = source.token().on_cancel([&] { ++calls; });
    source.cancel();
    source.cancel();
    CHECK(calls == 1);
    CHECK(dropped_calls == 0);
    int late = 0;
    auto after = source.token().on_cancel([&] { ++late; });
    CHECK(late == 1);
  });
}

TEST_CASE("a deadline with a callback fires it when it passes (the deadline watcher)") {
  isolated([] {
    cancellation_source source(20ms);
    std::promise<cancel_reason> fired;
    auto registration =
        source.token().on_cancel([&, token = source.token()] { fired.set_value(token.reason()); });
    auto future = fired.get_future();
    CHECK(ctxpool_test::get_within(future, "the deadline's callback") == cancel_reason::deadline);
  });
}

TEST_CASE("a parent's deadline reaches a child's callback") {
  isolated([] {
    cancellation_source parent(20ms);
    std::promise<void> fired;
    auto child = parent.run([] { return cancellation_source{}; });
    auto registration = child.token().on_cancel([&] { fired.set_value(); });
    ctxpool_test::require_within(fired.get_future(), hang_bound, "the parent deadline's callback");
    CHECK(child.token().reason() == cancel_reason::deadline);
  });
}

TEST_CASE("cancel from another thread is seen by a thread polling its context") {
  isolated([] {
    cancellation_source source;
    ctxpool::context carried = source.run([] { return ctxpool::copy_context(); });
    std::atomic<bool> started{false};
    std::thread poller([&] {
      carried.run([&] {
        started = true;
        const auto give_up = deadline_clock::now() + hang_bound;
        while (!this_task::cancelled() && deadline_clock::now() < give_up)
          std::this_thread::yield();
      });
    });
    while (!started) std::this_thread::yield();
    source.cancel();
    poller.join();
    CHECK(carried.run([] { return this_task::cancelled(); }));
  });
}

TEST_CASE("a source made from a token is that token's child, wherever it is made") {
  isolated([] {
    cancellation_source parent;
    cancellation_source unrelated;
    cancellation_scope elsewhere(unrelated);
    cancellation_source child(parent.token());
    unrelated.cancel();
    CHECK_FALSE(child.cancelled());
    parent.cancel();
    CHECK(child.cancelled());
  });
}
