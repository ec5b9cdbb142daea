// Request ids in Boost.Log records from tasks, handlers and coroutine steps on
// the pool, with several requests in flight, through an asynchronous sink
// whose formatting runs on its own thread.
#include <ctxpool/log/boost_log.hpp>

#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/core/null_deleter.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/async_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/logger.hpp>
#include <boost/log/sources/record_ostream.hpp>

namespace asio = boost::asio;
namespace logging = boost::log;
namespace expr = boost::log::expressions;
using namespace std::chrono_literals;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::context_var<int> attempt{"attempt", 1};
ctxpool::context_var<std::string> tenant{"tenant"};  // never set: no attribute

constexpr int requests = 12;
constexpr int lines_per_request = 4;

void say(const std::string& text) {
  logging::sources::logger lg;  // thread-safe enough: one per call
  BOOST_LOG(lg) << text;
}

}  // namespace

TEST_CASE("asynchronous sink: every record carries the request id of the code that logged it") {
  using sink_t = logging::sinks::asynchronous_sink<logging::sinks::text_ostream_backend>;
  auto stream = std::make_shared<std::ostringstream>();
  auto sink = boost::make_shared<sink_t>();
  sink->locked_backend()->add_stream(
      boost::shared_ptr<std::ostream>(stream.get(), boost::null_deleter()));
  sink->set_formatter(expr::stream << "[" << expr::attr<std::string>("RequestID") << " #"
                                   << expr::attr<int>("Attempt")
                                   << expr::attr<std::string>("Tenant") << "] " << expr::smessage);
  auto core = logging::core::get();
  core->add_sink(sink);
  auto request_attr =
      core->add_global_attribute("RequestID", ctxpool::log::context_attribute(request_id));
  auto attempt_attr =
      core->add_global_attribute("Attempt", ctxpool::log::context_attribute(attempt));
  auto tenant_attr = core->add_global_attribute("Tenant", ctxpool::log::context_attribute(tenant));

  {
    ctxpool::thread_pool pool{4};
    std::atomic<int> logged{0};
    auto log = [&logged](const std::string& text) {
      say(text);
      logged.fetch_add(1);
    };
    for (int r = 0; r < requests; ++r) {
      ctxpool::set_scope scope(request_id, "req-" + std::to_string(r));
      pool.post([&pool, log, r] {
        const std::string id = "req-" + std::to_string(r);
        log("task for " + id);
        pool.post([log, id] { log("nested task for " + id); });
        asio::post(pool, [log, id] { log("handler for " + id); });
        asio::co_spawn(
            pool,
            [&pool, log, id]() -> asio::awaitable<void> {
              asio::steady_timer timer(pool, 1ms);
              co_await timer.async_wait(asio::use_awaitable);
              log("coroutine step for " + id);
            },
            asio::detached);
      });
    }
    // Bounded: nothing blocks a worker, the test thread waits for the lines.
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (logged.load() < requests * lines_per_request &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    REQUIRE(logged.load() == requests * lines_per_request);
    pool.join();
  }
  core->remove_sink(sink);
  sink->stop();
  sink->flush();  // formats what is still queued
  core->remove_global_attribute(request_attr.first);
  core->remove_global_attribute(attempt_attr.first);
  core->remove_global_attribute(tenant_attr.first);

  std::istringstream lines(stream->str());
  const std::regex shape(R"(^\[(req-\d+) #1\] .* for (req-\d+)$)");
  int matched = 0;
  int total = 0;
  for (std::string line; std::getline(lines, line);) {
    ++total;
    std::smatch m;
    if (std::regex_search(line, m, shape) && m[1] == m[2]) {
      ++matched;
    } else {
      FAIL_CHECK("line without its request's id: " << line);
    }
  }
  CHECK(total == requests * lines_per_request);
  CHECK(matched == requests * lines_per_request);
}
