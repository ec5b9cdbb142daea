// request_context: a Flask-style request stack and request globals on a pool.
//
// A tiny web framework in the manner of Flask/werkzeug: the current request
// lives on a per-thread stack (`ctxpool::local_stack`, werkzeug's LocalStack),
// `request()` is its top, and `g` holds request-scoped globals
// (`ctxpool::thread_local_var`, wiped after each pool task). Handlers reach
// them from anywhere in the call chain without passing them around. A handler
// may push a nested request (an internal sub-request) and pop it again.
//
// Thread-local state stays on its thread: a background job the handler posts
// runs elsewhere and has no request -- `request()` throws there, as Flask's
// does outside a request. What must travel with the work is a
// `ctxpool::context_var` (`request_id` here), which every task inherits from
// its submitter.
//
// Many requests run concurrently on the pool; every handler checks at every
// step that it sees only its own request, user and globals, that nothing an
// earlier request left on its thread is visible, and the background jobs check
// that the request id reached them. Exits non-zero on any mismatch.
#include <atomic>
#include <cstdio>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

namespace {

// ---- the framework ------------------------------------------------------------

struct http_request {
  int id;
  std::string path;
  std::string user;
};

/// Thrown by request() where there is none (Flask: "Working outside of request context").
class outside_request_context : public std::runtime_error {
 public:
  outside_request_context()
      : std::runtime_error(
            "working outside of request context: push a request_context "
            "or pass what the work needs as a context_var") {}
};

ctxpool::local_stack<http_request> request_stack{"request_stack"};
ctxpool::thread_local_var<std::map<std::string, std::string>> g{"g"};
ctxpool::context_var<int> request_id{"request_id", 0};

/// The current request (Flask's `request` proxy).
const http_request& request() {
  const http_request* top = request_stack.top();
  if (top == nullptr) throw outside_request_context();
  return *top;
}

/// Pushes a request for the enclosing block (Flask's `with app.request_context(...)`).
/// The outermost one also opens and tears down `g`, as Flask's app context does.
class request_context {
 public:
  explicit request_context(http_request r) {
    if (request_stack.empty()) g.set({});
    request_stack.push(std::move(r));
  }
  ~request_context() {
    (void)request_stack.pop();
    if (request_stack.empty()) g.reset();
  }
  request_context(const request_context&) = delete;
  request_context& operator=(const request_context&) = delete;
};

// ---- checks ----------------------------------------------------------------------

std::atomic<int> failures{0};
std::mutex report_mutex;

void check(bool ok, int id, const char* what) {
  if (ok) return;
  if (failures.fetch_add(1) < 20) {
    std::lock_guard lock(report_mutex);
    std::printf("  FAIL request %d: %s\n", id, what);
  }
}

// ---- the application -------------------------------------------------------------

ctxpool::thread_pool* app_pool = nullptr;
std::atomic<int> audits_done{0};

void load_user() { g.value()["user"] = request().user; }

std::string greeting() { return "hello " + g.value().at("user") + " at " + request().path; }

/// An internal sub-request: pushes a nested request on the same thread.
std::string render_fragment(int parent) {
  request_context inner({-parent, "/fragment/" + std::to_string(parent), request().user});
  check(request_stack.size() == 2, parent, "nested request: the stack holds both");
  check(request().id == -parent, parent, "nested request: request() is the inner one");
  return greeting();
}

/// A separate pool task the handler posts, on whichever worker is free: that
/// thread's request stack is not the handler's.
void audit_job(int expected_id) {
  check(request_id.get() == expected_id, expected_id, "background job: request_id travelled");
  bool threw = false;
  try {
    (void)request();
  } catch (const outside_request_context&) {
    threw = true;
  }
  check(threw, expected_id, "background job: request() has no request on its thread");
  audits_done.fetch_add(1);
}

void handle(const http_request& r, std::latch* all_in_flight) {
  // Nothing an earlier request left on this thread is visible here.
  check(request_stack.empty(), r.id, "fresh task: the request stack is empty");
  check(!g.has_value(), r.id, "fresh task: g is empty");

  request_context ctx(r);
  // The first few requests wait for each other, so that one request context
  // per worker is provably alive at the same time.
  if (all_in_flight != nullptr) all_in_flight->arrive_and_wait();
  load_user();
  std::this_thread::yield();  // let other requests interleave

  check(request().id == r.id, r.id, "request() is this request");
  check(request_id.get() == r.id, r.id, "request_id is this request's");
  const std::string fragment = render_fragment(r.id);
  check(fragment == "hello " + r.user + " at /fragment/" + std::to_string(r.id), r.id,
        "fragment rendered for this request's user");
  check(request_stack.size() == 1, r.id, "after the sub-request, one request is left");
  check(request().path == r.path, r.id, "request() is this request again");

  app_pool->post([id = r.id] { audit_job(id); });

  std::this_thread::yield();
  check(greeting() == "hello " + r.user + " at " + r.path, r.id, "g and request() still ours");
}

}  // namespace

int main() {
  constexpr std::size_t workers = 4;
  constexpr int requests = 5000;
  const char* users[] = {"alice", "bob", "carol", "dave", "erin"};

  ctxpool::thread_pool pool(workers);
  app_pool = &pool;
  std::latch all_in_flight(static_cast<std::ptrdiff_t>(workers));
  std::mutex threads_mutex;
  std::set<std::thread::id> threads;

  for (int id = 1; id <= requests; ++id) {
    http_request r{id, "/users/" + std::to_string(id), users[id % 5]};
    std::latch* latch = id <= static_cast<int>(workers) ? &all_in_flight : nullptr;
    // The server sets the request id for the work it hands off.
    ctxpool::set_scope scope(request_id, id);
    pool.post([r = std::move(r), latch, &threads_mutex, &threads] {
      {
        std::lock_guard lock(threads_mutex);
        threads.insert(std::this_thread::get_id());
      }
      handle(r, latch);
    });
  }
  pool.wait();  // also waits for the audit jobs the handlers posted
  pool.join();

  std::printf(
      "request_context: %d requests on %zu workers (%zu threads served), %d background "
      "jobs, %d failures\n",
      requests, workers, threads.size(), audits_done.load(), failures.load());
  const bool ok = failures.load() == 0 && audits_done.load() == requests &&
                  threads.size() == workers && request_id.get() == 0;
  std::printf("%s\n", ok ? "OK: every request saw only its own request, user and globals" : "FAIL");
  return ok ? 0 : 1;
}
