// Tests of <ctxpool/propagation.hpp> and <ctxpool/text_map.hpp>: extract and
// inject over Beast messages and maps, the processing model of W3C Trace
// Context ("Processing Model"), and the trace following work on the pool.
#include <ctxpool/propagation.hpp>

#include <doctest/doctest.h>

#include <boost/beast/http.hpp>

#include <ctxpool/executor.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "support/watchdog.hpp"

#include <cstdio>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace http = boost::beast::http;

namespace {

using ctxpool::baggage;
using ctxpool::trace_context;
using ctxpool::traceparent;

constexpr std::string_view incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A carrier of our own, reached through a text_map_traits specialisation.
struct message_properties {
  std::vector<std::pair<std::string, std::string>> items;
};

}  // namespace

template <>
struct ctxpool::text_map_traits<message_properties> {
  template <class F>
  static void for_each(const message_properties& m, std::string_view name, F&& f) {
    for (const auto& [k, v] : m.items) {
      if (k == name) f(v);
    }
  }
  static void set(message_properties& m, std::string_view name, std::string_view value) {
    m.items.emplace_back(name, value);
  }
};

static_assert(ctxpool::text_map_reader<http::request<http::string_body>>);
static_assert(ctxpool::text_map_writer<http::fields>);
static_assert(ctxpool::text_map_reader<std::map<std::string, std::string>>);
static_assert(ctxpool::text_map_writer<std::unordered_map<std::string, std::string>>);
static_assert(ctxpool::text_map_writer<std::multimap<std::string, std::string>>);
static_assert(ctxpool::text_map_writer<message_properties>);
static_assert(!ctxpool::text_map_reader<int>);
static_assert(!ctxpool::text_map_reader<std::vector<std::string>>);

TEST_CASE("extract: a Beast request - names ignore case ('Header Name'), repeated fields combine") {
  http::request<http::string_body> req{http::verb::get, "/", 11};
  req.insert("TraceParent", incoming);
  req.insert("TRACESTATE", "rojo=00f067aa0ba902b7");
  req.insert("tracestate", "congo=t61rcWkgMzE");
  req.insert("Baggage", "userId=alice");
  req.insert("baggage", "serverNode=DF%2028");
  ctxpool::context ctx;
  ctx.run([&] {
    const trace_context t = ctxpool::extract(req);
    CHECK(t.remote);
    CHECK(t.trace.to_string() == "0af7651916cd43dd8448eb211c80319c");
    CHECK(t.parent.to_string() == "b7ad6b7169203331");
    CHECK(t.state.format() == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    const auto current = ctxpool::current_trace();
    REQUIRE(current);
    CHECK(current->trace == t.trace);
    CHECK(ctxpool::current_baggage().format() == "userId=alice,serverNode=DF%2028");
  });
  // Outside the context nothing was set.
  CHECK_FALSE(ctxpool::current_trace());
  CHECK(ctxpool::current_baggage().empty());
}

TEST_CASE("inject: same trace id, flags and tracestate; a fresh parent id on every call") {
  std::map<std::string, std::string> in{{"traceparent", std::string(incoming)},
                                        {"tracestate", "rojo=00f067aa0ba902b7"},
                                        {"baggage", "k=v;p"}};
  ctxpool::context ctx;
  ctx.run([&] {
    ctxpool::extract(in);
    std::set<std::string> parents;
    for (int i = 0; i < 10; ++i) {
      http::request<http::empty_body> out{http::verb::post, "/next", 11};
      out.set("traceparent", "stale");
      const ctxpool::span_id op = ctxpool::inject(out);
      const auto written = traceparent::parse(ctxpool::detail::as_std_view(out["traceparent"]));
      REQUIRE(written);
      CHECK(written->trace.to_string() == "0af7651916cd43dd8448eb211c80319c");
      CHECK(written->parent == op);
      CHECK(written->parent.to_string() != "b7ad6b7169203331");
      CHECK(written->flags.sampled());
      CHECK(out.count("traceparent") == 1);  // replaced, not added
      CHECK(out["tracestate"] == "rojo=00f067aa0ba902b7");
      CHECK(out["baggage"] == "k=v;p");
      parents.insert(written->parent.to_string());
    }
    CHECK(parents.size() == 10);
  });
}

TEST_CASE("'Processing Model': no or invalid traceparent restarts the trace and drops tracestate") {
  for (const std::map<std::string, std::string>& carrier : {
           std::map<std::string, std::string>{{"tracestate", "foo=1"}},
           std::map<std::string, std::string>{
               {"traceparent", "00-00000000000000000000000000000000-1234567890123456-01"},
               {"tracestate", "foo=1"}},
           std::map<std::string, std::string>{
               {"traceparent", "ff-12345678901234567890123456789012-1234567890123456-01"},
               {"tracestate", "foo=1"}},
       }) {
    const trace_context t = ctxpool::extract_trace_context(carrier);
    CHECK_FALSE(t.remote);
    CHECK(t.trace.is_valid());
    CHECK(t.trace.to_string() != "00000000000000000000000000000000");
    CHECK(t.trace.to_string() != "12345678901234567890123456789012");
    CHECK(t.state.empty());
    CHECK(t.flags.random());
  }
  // suite: test_traceparent_duplicated - two traceparent fields are invalid.
  std::multimap<std::string, std::string> two{
      {"traceparent", "00-12345678901234567890123456789011-1234567890123456-01"},
      {"traceparent", "00-12345678901234567890123456789012-1234567890123456-01"}};
  const trace_context t = ctxpool::extract_trace_context(two);
  CHECK_FALSE(t.remote);
  CHECK(t.trace.to_string() != "12345678901234567890123456789011");
  CHECK(t.trace.to_string() != "12345678901234567890123456789012");
  // An invalid tracestate does not affect traceparent ("Tracestate Header").
  const trace_context kept = ctxpool::extract_trace_context(std::map<std::string, std::string>{
      {"traceparent", std::string(incoming)}, {"tracestate", "BAD=1"}});
  CHECK(kept.remote);
  CHECK(kept.state.empty());
}

TEST_CASE(
    "inject without extract starts a trace; the random flag goes along ('Random Trace ID Flag')") {
  ctxpool::context ctx;
  ctx.run([] {
    std::unordered_map<std::string, std::string> out;
    ctxpool::inject(out);
    const auto written = traceparent::parse(out.at("traceparent"));
    REQUIRE(written);
    CHECK(written->flags.random());
    CHECK_FALSE(out.contains("tracestate"));
    CHECK_FALSE(out.contains("baggage"));
  });
  // Continuing a trace keeps its random flag exactly as received.
  for (std::string_view flags : {"00", "02"}) {
    ctxpool::context c;
    c.run([&] {
      std::map<std::string, std::string> in{
          {"traceparent",
           "00-12345678901234567890123456789012-1234567890123456-" + std::string(flags)}};
      ctxpool::extract(in);
      std::map<std::string, std::string> out;
      ctxpool::inject(out);
      CHECK(out.at("traceparent").substr(0, 36) == "00-12345678901234567890123456789012-");
      CHECK(out.at("traceparent").ends_with(flags));
    });
  }
}

TEST_CASE("map carriers: any case on input, one lowercase field on output") {
  std::multimap<std::string, std::string> carrier{
      {"TRACEPARENT", std::string(incoming)}, {"Baggage", "a=1"}, {"baggage", "b=2"}};
  CHECK(ctxpool::extract_trace_context(carrier).remote);
  CHECK(ctxpool::extract_baggage(carrier).format() == "a=1,b=2");
  ctxpool::text_map_traits<decltype(carrier)>::set(carrier, "Baggage", "c=3");
  CHECK(carrier.count("baggage") == 1);
  CHECK(carrier.count("Baggage") == 0);
  CHECK(ctxpool::extract_baggage(carrier).format() == "c=3");
}

TEST_CASE("a carrier of one's own, through text_map_traits") {
  message_properties in{{{"traceparent", std::string(incoming)}, {"baggage", "x=1"}}};
  ctxpool::context ctx;
  ctx.run([&] {
    ctxpool::extract(in);
    message_properties out;
    ctxpool::inject(out);
    REQUIRE(out.items.size() == 2);
    CHECK(out.items[0].first == "traceparent");
    CHECK(out.items[1].second == "x=1");
  });
}

TEST_CASE("the trace and baggage follow tasks and sub-tasks on the pool, never crossing requests") {
  ctxpool::thread_pool pool{2};
  std::vector<std::future<std::future<bool>>> results;
  for (int request = 0; request < 50; ++request) {
    results.push_back(pool.submit([&pool, request] {
      // Each request's own ids, made deterministic so a crossing is visible.
      char trace_hex[33];
      std::snprintf(trace_hex, sizeof trace_hex, "%032x", request + 1);
      std::map<std::string, std::string> in{
          {"traceparent", "00-" + std::string(trace_hex) + "-1234567890123456-01"},
          {"baggage", "request=" + std::to_string(request)}};
      ctxpool::extract(in);
      // A sub-task captures this task's context: it sees the same trace and
      // baggage, and its outgoing call carries them.
      return pool.submit([request, expected = std::string(trace_hex)] {
        std::map<std::string, std::string> out;
        ctxpool::inject(out);
        return out.at("traceparent").substr(3, 32) == expected &&
               out.at("baggage") == "request=" + std::to_string(request) &&
               ctxpool::current_baggage().get("request") == std::to_string(request);
      });
    }));
  }
  for (auto& r : results) {
    auto sub_task = ctxpool_test::get_within(r);
    CHECK(ctxpool_test::get_within(sub_task));
  }
  pool.wait();
  // The pool's tasks left nothing behind in this thread's context.
  CHECK_FALSE(ctxpool::current_trace());
}

TEST_CASE(
    "the trace and baggage follow Asio handlers, strands and every coroutine step of their "
    "request") {
  namespace asio = boost::asio;
  // Coroutine steps resume from this outside thread: each resumption is a
  // handler posted into the pool from outside, as completed I/O is. Made
  // before the pool, so destroyed after it: a worker may still be inside
  // its post to `outside` (signalling its scheduler) when the step it
  // posted has already completed the request's future.
  asio::io_context outside;
  ctxpool::thread_pool pool{2};
  auto outside_work = asio::make_work_guard(outside);
  std::thread outside_thread([&] { outside.run(); });

  constexpr int requests = 16;
  constexpr int steps = 4;
  // What one piece of a request's work sees: its trace id and baggage, as
  // the outgoing call it would make carries them.
  auto outgoing = [] {
    std::map<std::string, std::string> out;
    ctxpool::inject(out);
    return out.at("traceparent").substr(3, 32) + " " + out.at("baggage");
  };
  std::vector<std::future<std::vector<std::future<std::string>>>> started;
  for (int request = 0; request < requests; ++request) {
    started.push_back(pool.submit([&, request] {
      char trace_hex[33];
      std::snprintf(trace_hex, sizeof trace_hex, "%032x", request + 1);
      ctxpool::extract(std::map<std::string, std::string>{
          {"traceparent", "00-" + std::string(trace_hex) + "-1234567890123456-01"},
          {"baggage", "request=" + std::to_string(request)}});
      std::vector<std::future<std::string>> seen;
      seen.push_back(asio::post(pool, asio::use_future(outgoing)));
      seen.push_back(asio::post(asio::make_strand(pool), asio::use_future(outgoing)));
      seen.push_back(asio::co_spawn(
          pool,
          [&outside, outgoing]() -> asio::awaitable<std::string> {
            // Every step must see the request's values; any step that does
            // not makes the result differ from the other pieces'.
            std::string first = outgoing();
            for (int step = 0; step < steps; ++step) {
              co_await asio::post(outside, asio::use_awaitable);
              if (outgoing() != first) co_return "step " + std::to_string(step) + ": " + outgoing();
            }
            co_return first;
          },
          asio::use_future));
      return seen;
    }));
  }
  for (int request = 0; request < requests; ++request) {
    char trace_hex[33];
    std::snprintf(trace_hex, sizeof trace_hex, "%032x", request + 1);
    const std::string expected = std::string(trace_hex) + " request=" + std::to_string(request);
    auto seen = ctxpool_test::get_within(started[static_cast<std::size_t>(request)]);
    for (auto& piece : seen) CHECK(ctxpool_test::get_within(piece) == expected);
  }
  outside_work.reset();
  outside_thread.join();
}

TEST_CASE("set by hand: the variables are ordinary context variables") {
  ctxpool::context ctx;
  ctx.run([] {
    auto bag = ctxpool::current_baggage();
    bag.set("tenant", "acme");
    ctxpool::set_scope scope(ctxpool::baggage_var(), bag);
    std::map<std::string, std::string> out;
    ctxpool::inject(out);
    CHECK(out.at("baggage") == "tenant=acme");
  });
}

TEST_CASE("extract replaces the current trace and baggage: a request without baggage has none") {
  ctxpool::context ctx;
  ctx.run([] {
    ctxpool::extract(std::map<std::string, std::string>{{"traceparent", std::string(incoming)},
                                                        {"baggage", "a=1"}});
    CHECK(ctxpool::current_baggage().get("a") == "1");
    ctxpool::extract(std::map<std::string, std::string>{{"traceparent", std::string(incoming)}});
    CHECK(ctxpool::current_baggage().empty());
    ctxpool::extract(std::map<std::string, std::string>{});
    CHECK_FALSE(ctxpool::current_trace()->remote);
  });
}
