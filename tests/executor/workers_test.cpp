// Tests of the pool's workers (<ctxpool/executor.hpp>): thread counts,
// thread names, task observers and stats.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <pthread.h>

#include <algorithm>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>

namespace asio = boost::asio;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::thread_local_var<std::string> auth_token{"auth_token"};

}  // namespace

TEST_CASE("invalid thread counts are rejected with a clear exception") {
  CHECK_THROWS_AS(ctxpool::thread_pool{0}, std::invalid_argument);
  CHECK_THROWS_AS(ctxpool::thread_pool{static_cast<std::size_t>(-1)}, std::invalid_argument);
  ctxpool::thread_pool_options options;
  options.threads = ctxpool::thread_pool::max_threads + 1;
  CHECK_THROWS_AS(ctxpool::thread_pool{options}, std::invalid_argument);
  ctxpool::thread_pool defaulted;
  CHECK(defaulted.thread_count() >= 1);
  CHECK(defaulted.thread_count() == std::max(1U, std::thread::hardware_concurrency()));
}

TEST_CASE("workers are named ctxpool-N, or with the configured prefix") {
  ctxpool::thread_pool pool{2};
  auto name = pool.submit([] {
                    char buffer[16] = {};
                    pthread_getname_np(pthread_self(), buffer, sizeof buffer);
                    return std::string(buffer);
                  })
                  .get();
  CHECK((name == "ctxpool-0" || name == "ctxpool-1"));

  ctxpool::thread_pool_options options;
  options.threads = 1;
  options.name_prefix = "io-";
  ctxpool::thread_pool named{options};
  CHECK(named
            .submit([] {
              char buffer[16] = {};
              pthread_getname_np(pthread_self(), buffer, sizeof buffer);
              return std::string(buffer);
            })
            .get() == "io-0");
}

namespace {

/// Records the events it sees, checking what each hook promises.
class recording_observer : public ctxpool::task_observer {
 public:
  void on_thread_start(std::size_t index) noexcept override {
    add("start " + std::to_string(index));
  }
  void on_thread_stop(std::size_t index) noexcept override { add("stop " + std::to_string(index)); }
  void on_task_begin(const ctxpool::task_info& info) noexcept override {
    // Inside the task's context, before the function.
    add("begin " + request_id.get_or("-") + " line " + std::to_string(info.submit_site.line()));
  }
  void on_task_end(const ctxpool::task_info&) noexcept override {
    // After the wipe: the task's slot is empty again.
    add(std::string("end wiped=") + (auth_token.has_value() ? "no" : "yes"));
  }
  std::vector<std::string> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  void add(std::string event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  std::mutex mutex_;
  std::vector<std::string> events_;
};

}  // namespace

TEST_CASE("observers see thread start/stop and task begin/end in order") {
  recording_observer observer;
  {
    ctxpool::thread_pool_options options;
    options.threads = 1;
    options.observers = {&observer};
    ctxpool::thread_pool pool{options};
    ctxpool::set_scope scope(request_id, "obs");
    const auto line = __LINE__ + 1;
    pool.submit([] { auth_token.set("x"); }).get();
    pool.join();
    const std::vector<std::string> expected = {"start 0", "begin obs line " + std::to_string(line),
                                               "end wiped=yes", "stop 0"};
    CHECK(observer.events() == expected);
  }
}

TEST_CASE("observers see a task dispatched inline from a worker nested in its parent") {
  recording_observer observer;
  ctxpool::thread_pool_options options;
  options.threads = 1;
  options.observers = {&observer};
  ctxpool::thread_pool pool{options};
  auto executor = pool.get_executor();
  pool.submit([executor] {
        bool inner_ran = false;
        asio::dispatch(executor, [&inner_ran] { inner_ran = true; });
        CHECK(inner_ran);  // dispatch from a worker runs inline
      })
      .get();
  pool.join();
  const auto events = observer.events();
  REQUIRE(events.size() == 6);
  CHECK(events[1].starts_with("begin"));
  CHECK(events[2].starts_with("begin"));
  CHECK(events[3].starts_with("end"));
  CHECK(events[4].starts_with("end"));
}

TEST_CASE("stats report threads, queued, running and completed tasks") {
  ctxpool::thread_pool pool{1};
  std::promise<void> release;
  std::promise<void> started;
  auto blocker = pool.submit([&started, gate = release.get_future()] {
    started.set_value();
    gate.wait();
  });
  started.get_future().wait();
  std::vector<std::future<void>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(pool.submit([] {}));
  auto busy = pool.stats();
  CHECK(busy.threads == 1);
  CHECK(busy.running == 1);
  CHECK(busy.queued == 3);
  release.set_value();
  pool.wait();
  auto idle = pool.stats();
  CHECK(idle.running == 0);
  CHECK(idle.queued == 0);
  CHECK(idle.completed == 4);
  CHECK(pool.tasks_queued() == 0);
  CHECK(pool.tasks_running() == 0);
  CHECK(pool.tasks_completed() == 4);
  CHECK(pool.thread_count() == 1);
}
