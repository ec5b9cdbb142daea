// Programs of the shapes residue detection must judge the same in every run,
// whatever worker each task lands on: shapes_test runs each one repeatedly,
// with 1, 2 and 4 workers, under CTXPOOL_DIAGNOSTICS=residue.
//
// Usage: shapes_child <shape> <workers>. A buggy shape must make the process
// exit 66 naming its variable; a clean shape must exit 0. Every shape exits 3
// itself when its own expectations about the pool do not hold.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

ctxpool::thread_local_var<std::string> auth_token{"auth_token"};
ctxpool::local_stack<int> request_stack{"request_stack"};
ctxpool::thread_local_var<int> connection{"connection", ctxpool::lifetime::thread};
ctxpool::context_var<std::string> request_user{"request_user"};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "shapes_child: %s\n", what);
  std::exit(3);
}

void login() { auth_token.set("alice-token"); }
bool anonymous_sees_token() { return auth_token.has_value(); }

// ---- buggy shapes: exit 66 naming the variable -----------------------------------

asio::awaitable<void> coroutine_login() {
  login();
  co_return;
}

asio::awaitable<void> coroutine_anonymous() {
  (void)anonymous_sees_token();
  co_return;
}

void coroutine_to_coroutine(ctxpool::thread_pool& pool) {
  asio::co_spawn(pool.get_executor(), coroutine_login(), asio::use_future).get();
  asio::co_spawn(pool.get_executor(), coroutine_anonymous(), asio::use_future).get();
}

void strand(ctxpool::thread_pool& pool) {
  auto s = asio::make_strand(pool.get_executor());
  asio::post(s, login);
  asio::post(s, [] { (void)anonymous_sees_token(); });
  pool.wait();
}

void asio_post(ctxpool::thread_pool& pool) {
  asio::post(pool.get_executor(), login);
  pool.wait();
  asio::post(pool.get_executor(), [] { (void)anonymous_sees_token(); });
  pool.wait();
}

void nested_submit(ctxpool::thread_pool& pool) {
  pool.post([&pool] {
    login();
    // The sub-task relies on the token its parent left on "its" thread.
    pool.post([] { (void)auth_token.value_or("anonymous"); });
  });
  pool.wait();
}

void value_or_read(ctxpool::thread_pool& pool) {
  pool.submit(login).get();
  (void)pool.submit([] { return auth_token.value_or("anonymous"); }).get();
}

void after_many_tasks(ctxpool::thread_pool& pool) {
  pool.submit(login).get();
  std::vector<std::future<void>> unrelated;
  for (int i = 0; i < 1000; ++i) unrelated.push_back(pool.submit([] {}));
  for (auto& f : unrelated) f.get();
  (void)pool.submit(anonymous_sees_token).get();
}

/// A request handler that pushes its id and pops it when done, except when
/// the handler throws before the pop.
void handle_request(int id, bool fail_midway) {
  request_stack.push(id);
  if (fail_midway) throw std::runtime_error("handler failed");
  (void)request_stack.pop();
}

void stack_skipped_pop(ctxpool::thread_pool& pool) {
  auto failed = pool.submit([] { handle_request(1, true); });
  try {
    failed.get();
    fail("the failing request did not fail");
  } catch (const std::runtime_error&) {
  }
  // A later request inspects the stack first: the current request, if any.
  (void)pool.submit([] { return request_stack.top() != nullptr; }).get();
}

void stack_push_then_depth(ctxpool::thread_pool& pool) {
  auto failed = pool.submit([] { handle_request(1, true); });
  try {
    failed.get();
    fail("the failing request did not fail");
  } catch (const std::runtime_error&) {
  }
  // A later request pushes first, then reads its depth: 1 on a fresh
  // thread, 2 on the thread the failed request left its frame on.
  (void)pool
      .submit([] {
        request_stack.push(2);
        const std::size_t depth = request_stack.size();
        (void)request_stack.pop();
        return depth;
      })
      .get();
}

asio::awaitable<void> write_await_read() {
  auth_token.set("set before the suspension");
  asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
  co_await timer.async_wait(asio::use_awaitable);  // resumes on any worker
  (void)auth_token.value_or("");                   // expects the value of the step before
}

void coroutine_suspension(ctxpool::thread_pool& pool) {
  asio::co_spawn(pool.get_executor(), write_await_read(), asio::use_future).get();
}

// ---- clean shapes: exit 0 ---------------------------------------------------------

void own_write(ctxpool::thread_pool& pool) {
  std::vector<std::future<bool>> done;
  for (int i = 0; i < 50; ++i) {
    done.push_back(pool.submit([i] {
      auth_token.set("token-" + std::to_string(i));
      return auth_token.value() == "token-" + std::to_string(i);
    }));
  }
  for (auto& f : done) {
    if (!f.get()) fail("a task did not read its own write");
  }
}

void thread_cache(ctxpool::thread_pool& pool) {
  std::vector<std::future<void>> done;
  for (int i = 0; i < 50; ++i) {
    done.push_back(pool.submit([i] {
      if (!connection.has_value()) connection.set(i);  // one connection per worker
      (void)connection.value();
    }));
  }
  for (auto& f : done) f.get();
}

void context_var_passed(ctxpool::thread_pool& pool) {
  std::vector<std::future<bool>> done;
  for (int i = 0; i < 50; ++i) {
    const std::string user = i % 3 == 0 ? "" : "user-" + std::to_string(i);
    auto token = request_user.set(user);
    done.push_back(pool.submit([user] { return request_user.get() == user; }));
    request_user.reset(token);
  }
  for (auto& f : done) {
    if (!f.get()) fail("a task did not see the submitter's context");
  }
}

void bind_context_foreign(ctxpool::thread_pool& pool) {
  asio::io_context foreign;
  auto work = asio::make_work_guard(foreign);
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    pool.post([&foreign, &ok, i] {
      auto token = request_user.set("user-" + std::to_string(i));
      // The completion runs on the foreign io_context, inside this context.
      asio::post(foreign, ctxpool::bind_context([&ok, i] {
                   if (request_user.get() == "user-" + std::to_string(i)) ++ok;
                   auth_token.set("on the foreign thread");
                   (void)auth_token.value();
                 }));
      request_user.reset(token);
    });
  }
  pool.wait();
  work.reset();
  foreign.run();
  if (ok != 20) fail("a bound handler did not see its context");
}

asio::awaitable<void> connection_handler(int n) {
  for (int step = 0; step < 3; ++step) {
    auth_token.set("conn-" + std::to_string(n));  // written first in every step
    if (auth_token.value() != "conn-" + std::to_string(n)) fail("own write lost");
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<void> acceptor() {
  auto executor = co_await asio::this_coro::executor;
  asio::co_spawn(executor, connection_handler(1), asio::detached);
  asio::co_spawn(executor, connection_handler(2), asio::detached);
}

void two_coroutines_one_acceptor(ctxpool::thread_pool& pool) {
  asio::co_spawn(pool.get_executor(), acceptor(), asio::detached);
  pool.wait();  // also waits for the connections' timers
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, std::function<void(ctxpool::thread_pool&)>> shapes = {
      {"coroutine_to_coroutine", coroutine_to_coroutine},
      {"strand", strand},
      {"asio_post", asio_post},
      {"nested_submit", nested_submit},
      {"value_or_read", value_or_read},
      {"after_many_tasks", after_many_tasks},
      {"stack_skipped_pop", stack_skipped_pop},
      {"stack_push_then_depth", stack_push_then_depth},
      {"coroutine_suspension", coroutine_suspension},
      {"own_write", own_write},
      {"thread_cache", thread_cache},
      {"context_var_passed", context_var_passed},
      {"bind_context_foreign", bind_context_foreign},
      {"two_coroutines_one_acceptor", two_coroutines_one_acceptor},
  };
  if (argc != 3 || !shapes.contains(argv[1])) {
    std::fprintf(stderr, "usage: shapes_child <shape> <workers>\n");
    return 2;
  }
  const int workers = std::atoi(argv[2]);
  if (workers < 1) return 2;
  {
    ctxpool::thread_pool pool{static_cast<std::size_t>(workers)};
    shapes.at(argv[1])(pool);
    pool.join();
  }
  return 0;
}
