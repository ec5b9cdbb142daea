// Request ids in spdlog lines from tasks, handlers and coroutine steps on the
// pool, with several requests in flight: through the async logger, whose
// formatting runs on spdlog's own thread, and through a synchronous logger.
#include <ctxpool/log/spdlog.hpp>

#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/async_logger.h>
#include <spdlog/details/thread_pool.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::context_var<int> attempt{"attempt", 1};

/// A sink keeping every formatted line.
class line_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    lines_.emplace_back(formatted.data(), formatted.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

std::shared_ptr<ctxpool::log::context_fields> make_fields() {
  auto fields = std::make_shared<ctxpool::log::context_fields>();
  fields->add(request_id).add(attempt);
  return fields;
}

constexpr int requests = 12;
constexpr int lines_per_request = 4;

/// Serves `requests` requests at once on `pool`; each logs from a task, a
/// nested task, an asio::post handler and a coroutine step after a timer,
/// naming its request in the message text ("for req-N"). Nothing blocks a
/// worker; the caller waits (bounded) until every line is logged.
void serve_requests(ctxpool::thread_pool& pool, spdlog::logger& logger) {
  std::atomic<int> logged{0};
  auto log = [&logger, &logged](std::string_view what, int r) {
    logger.info("{} for req-{}", what, r);
    logged.fetch_add(1);
  };
  for (int r = 0; r < requests; ++r) {
    ctxpool::set_scope scope(request_id, "req-" + std::to_string(r));
    pool.post([&pool, log, r] {
      log("task", r);
      pool.post([log, r] { log("nested task", r); });
      asio::post(pool, [log, r] { log("handler", r); });
      asio::co_spawn(
          pool,
          [&pool, log, r]() -> asio::awaitable<void> {
            asio::steady_timer timer(pool, 1ms);
            co_await timer.async_wait(asio::use_awaitable);
            log("coroutine step", r);
          },
          asio::detached);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (logged.load() < requests * lines_per_request &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  REQUIRE(logged.load() == requests * lines_per_request);
}

/// Every line names, in its fields, the request its message is for.
void check_lines(const std::vector<std::string>& lines) {
  CHECK(lines.size() == requests * lines_per_request);
  const std::regex shape(R"(\[request_id=(req-\d+) attempt=1\] .* for (req-\d+))");
  int matched = 0;
  for (const auto& line : lines) {
    std::smatch m;
    if (std::regex_search(line, m, shape) && m[1] == m[2]) {
      ++matched;
    } else {
      FAIL_CHECK("line without its request's id: " << line);
    }
  }
  CHECK(matched == requests * lines_per_request);
}

}  // namespace

TEST_CASE("async logger: every line carries the request id of the code that logged it") {
  auto sink = std::make_shared<line_sink>();
  {
    // A thread pool of spdlog's own (one formatting thread), joined below so
    // that every queued record is formatted before the lines are read.
    auto spdlog_threads = std::make_shared<spdlog::details::thread_pool>(8192, 1);
    auto async = std::make_shared<spdlog::async_logger>("requests", sink, spdlog_threads,
                                                        spdlog::async_overflow_policy::block);
    async->set_formatter(ctxpool::log::make_formatter(make_fields(), "[%*] %v"));
    auto logger = ctxpool::log::capture_context(async, make_fields());
    ctxpool::thread_pool pool{4};
    serve_requests(pool, *logger);
    pool.join();
    logger.reset();
    async.reset();
    spdlog_threads.reset();  // drains the queue, then joins its thread
  }
  check_lines(sink->lines());
}

TEST_CASE("spdlog's own async logger would format with the wrong thread's context") {
  // Why capture_context exists: the same formatter on the async logger alone
  // reads the context on spdlog's thread, where none is set.
  auto sink = std::make_shared<line_sink>();
  {
    auto spdlog_threads = std::make_shared<spdlog::details::thread_pool>(8192, 1);
    auto logger = std::make_shared<spdlog::async_logger>("plain", sink, spdlog_threads,
                                                         spdlog::async_overflow_policy::block);
    logger->set_formatter(ctxpool::log::make_formatter(make_fields(), "[%*] %v"));
    ctxpool::set_scope scope(request_id, "req-lost");
    logger->info("for req-lost");
    logger.reset();
    spdlog_threads.reset();
  }
  const auto lines = sink->lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("req-lost]") == std::string::npos);
  CHECK(lines[0].find("[attempt=1] for req-lost") != std::string::npos);
}

TEST_CASE("synchronous logger: the flag reads the logging thread's context") {
  auto sink = std::make_shared<line_sink>();
  spdlog::logger logger("requests", sink);
  logger.set_formatter(ctxpool::log::make_formatter(make_fields(), "[%*] %v"));
  ctxpool::thread_pool pool{4};
  serve_requests(pool, logger);
  pool.join();
  check_lines(sink->lines());
}

TEST_CASE("a message that merely looks framed is printed as it is") {
  auto sink = std::make_shared<line_sink>();
  spdlog::logger logger("plain", sink);
  logger.set_formatter(ctxpool::log::make_formatter(make_fields(), "[%*] %v"));
  logger.info(
      "\x1e"
      "99:too short");
  const auto lines = sink->lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("\x1e"
                      "99:too short") != std::string::npos);
}
