// token_leak: an anonymous request served with the previous request's identity.
//
// A small web handler keeps the caller's auth token in thread-local state: a
// middleware stores it when the request carries one, and code deep in the call
// chain (the page header) reads it to say who is logged in. Anonymous requests
// carry no token, so the middleware stores nothing -- and on a pool, whose
// threads are reused, the read finds whatever the previous request on that
// thread left behind.
//
//   token_leak --naive   plain std::thread pool + raw `thread_local`: the bug
//   token_leak --raw     the same unchanged handler, raw `thread_local` and
//                        all, moved onto ctxpool::thread_pool: still the bug
//                        (nothing wipes a plain thread_local), and the one
//                        residue detection finds with no code change
//   token_leak --pool    the handler on ctxpool::thread_pool with
//                        ctxpool::thread_local_var: the residue is wiped
//   token_leak --fixed   the token travels as a ctxpool::context_var set by
//                        the submitter: nothing to leak in the first place
//   token_leak --watched legacy code that must keep its raw `thread_local`:
//                        the naive handler on ctxpool::thread_pool with the
//                        variable registered by ctxpool::watch_thread_local,
//                        so the pool restores it after every task
//   token_leak           --naive, --pool and --fixed, with an explanation
//   token_leak --help    this list
//
// Under CTXPOOL_DIAGNOSTICS=residue (with the default number of workers, in
// every run, whichever worker each request lands on): `--raw` is reported as
// a stale read of the plain thread_local `auth_token`, naming the line that
// reads it, and exits 66; `--pool` is reported as a stale read of the
// thread_local_var (the anonymous request reads before writing a variable
// that logged-in requests leave dirty: in production it got nothing, on any
// other pool it gets someone else's token) and exits 66; `--fixed` is clean;
// `--watched` is reported as residue (a task left the watched variable
// changed) and exits 66.
//
// Each mode exits non-zero when what it demonstrates does not hold, so the
// sample is also a test. `--naive` uses one worker thread, which makes the
// interleaving, and so the leak, deterministic; more workers leak just as
// surely, only less predictably, and detection does not depend on it.
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

namespace {

// ---- the application: requests, users, a router ------------------------------

struct request {
  int id;
  std::string path;
  std::optional<std::string> token;  // the Authorization header; none = anonymous
};

/// What a handler reports back: the identity its page was rendered for.
struct outcome {
  int id;
  std::string expected;   // the requester's identity
  std::string served_as;  // the identity the handler actually used
};

const std::map<std::string, std::string, std::less<>> users_by_token = {
    {"tok-alice", "alice"}, {"tok-bob", "bob"}, {"tok-carol", "carol"}};

std::string user_of(std::string_view token) {
  if (token.empty()) return "anonymous";
  auto it = users_by_token.find(token);
  return it == users_by_token.end() ? "invalid-token" : it->second;
}

/// Twelve requests; every third is an anonymous visit to a public page, and
/// each of those follows an authenticated one.
std::vector<request> make_requests() {
  const char* tokens[] = {"tok-alice", "tok-bob", "tok-carol"};
  std::vector<request> out;
  std::size_t signed_in = 0;
  for (int i = 1; i <= 12; ++i) {
    if (i % 3 == 0) {
      out.push_back({i, "/public/news", std::nullopt});
    } else {
      out.push_back({i, "/account", std::string(tokens[signed_in++ % 3])});
    }
  }
  return out;
}

// ---- a typical hand-written pool: std::thread + mutex + condition variable ---

class naive_pool {
 public:
  explicit naive_pool(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~naive_pool() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    ready_.notify_all();
    for (auto& t : workers_) t.join();
  }
  template <class F>
  auto submit(F f) -> std::future<decltype(f())> {
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    {
      std::lock_guard lock(mutex_);
      queue_.emplace_back([task] { (*task)(); });
    }
    ready_.notify_one();
    return result;
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return done_ || !queue_.empty(); });
        if (queue_.empty()) return;  // done_ and drained
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  bool done_ = false;
  std::vector<std::thread> workers_;
};

// ---- the handler, three ways ---------------------------------------------------
//
// handle(r) -> authenticate(r) stores the token if the request has one
//           -> render(r) -> page_header() -> current_user() reads it

namespace naive {

thread_local std::string auth_token;  // "" = not logged in

void authenticate(const request& r) {
  if (r.token) auth_token = *r.token;  // anonymous: nothing to store... or so it seems
}
std::string current_user() { return user_of(auth_token); }
std::string page_header() { return current_user(); }
std::string render(const request&) { return page_header(); }
std::string handle(const request& r) {
  authenticate(r);
  return render(r);
}

}  // namespace naive

namespace pooled {

ctxpool::thread_local_var<std::string> auth_token{"auth_token"};  // wiped after each task

void authenticate(const request& r) {
  if (r.token) auth_token.set(*r.token);
}
std::string current_user() { return user_of(auth_token.value_or("")); }
std::string page_header() { return current_user(); }
std::string render(const request&) { return page_header(); }
std::string handle(const request& r) {
  authenticate(r);
  return render(r);
}

}  // namespace pooled

namespace fixed {

// Set by whoever hands the request to the pool; the task runs in a copy of
// that context, so it sees exactly the submitter's value -- or the default.
ctxpool::context_var<std::string> auth_token{"auth_token", ""};

std::string current_user() { return user_of(auth_token.get()); }
std::string page_header() { return current_user(); }
std::string render(const request&) { return page_header(); }
std::string handle(const request& r) { return render(r); }

}  // namespace fixed

// The router: account pages and public pages are dispatched from different
// places, so a diagnostics report can tell the two tasks' submit sites apart.
template <class Pool, class Handler>
std::future<std::string> dispatch(Pool& pool, const request& r, Handler handle) {
  if (r.path == "/account") {
    return pool.submit([r, handle] { return handle(r); });
  }
  return pool.submit([r, handle] { return handle(r); });
}

std::vector<outcome> collect(const std::vector<request>& requests,
                             std::vector<std::future<std::string>>& futures) {
  std::vector<outcome> out;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const request& r = requests[i];
    out.push_back({r.id, user_of(r.token.value_or("")), futures[i].get()});
  }
  return out;
}

std::vector<outcome> run_naive(const std::vector<request>& requests) {
  naive_pool pool(1);
  std::vector<std::future<std::string>> futures;
  for (const request& r : requests) futures.push_back(dispatch(pool, r, naive::handle));
  return collect(requests, futures);
}

std::vector<outcome> run_pool(const std::vector<request>& requests) {
  ctxpool::thread_pool pool;  // one worker per hardware thread
  std::vector<std::future<std::string>> futures;
  for (const request& r : requests) futures.push_back(dispatch(pool, r, pooled::handle));
  auto out = collect(requests, futures);
  pool.join();
  return out;
}

std::vector<outcome> run_raw(const std::vector<request>& requests) {
  ctxpool::thread_pool pool;  // the only change: the pool
  std::vector<std::future<std::string>> futures;
  for (const request& r : requests) futures.push_back(dispatch(pool, r, naive::handle));
  auto out = collect(requests, futures);
  pool.join();
  return out;
}

std::vector<outcome> run_watched(const std::vector<request>& requests) {
  // The watch restores naive::auth_token to "" on the worker after each task.
  const ctxpool::thread_local_watch watch =
      ctxpool::watch_thread_local("auth_token", []() -> std::string& { return naive::auth_token; });
  ctxpool::thread_pool pool(1);
  std::vector<std::future<std::string>> futures;
  for (const request& r : requests) futures.push_back(dispatch(pool, r, naive::handle));
  auto out = collect(requests, futures);
  pool.join();
  return out;
}

std::vector<outcome> run_fixed(const std::vector<request>& requests) {
  ctxpool::thread_pool pool(1);
  std::vector<std::future<std::string>> futures;
  for (const request& r : requests) {
    if (r.token) {
      // The acceptor knows who is calling: it sets the variable for exactly
      // the work it hands off, then restores its own context.
      ctxpool::set_scope as_caller(fixed::auth_token, *r.token);
      futures.push_back(dispatch(pool, r, fixed::handle));
    } else {
      futures.push_back(dispatch(pool, r, fixed::handle));
    }
  }
  auto out = collect(requests, futures);
  pool.join();
  return out;
}

// ---- verdicts ------------------------------------------------------------------

/// Prints every request and returns how many ran as someone else.
int print_outcomes(const std::vector<outcome>& outcomes) {
  int wrong = 0;
  for (const outcome& o : outcomes) {
    const bool leaked = o.served_as != o.expected;
    if (leaked) ++wrong;
    std::printf("  request %2d  %-9s -> served as %s%s\n", o.id, o.expected.c_str(),
                o.served_as.c_str(), leaked ? "   <-- ran as someone else" : "");
  }
  return wrong;
}

int anonymous_count(const std::vector<request>& requests) {
  int n = 0;
  for (const request& r : requests) n += r.token ? 0 : 1;
  return n;
}

bool demo_naive(const std::vector<request>& requests) {
  std::printf("--naive: std::thread pool, raw thread_local std::string\n");
  const int wrong = print_outcomes(run_naive(requests));
  const int expected = anonymous_count(requests);
  std::printf("  %d of %d anonymous requests ran as someone else\n", wrong, expected);
  if (wrong != expected) {
    std::printf("  FAIL: the leak did not reproduce as expected (%d, want %d)\n", wrong, expected);
    return false;
  }
  std::printf("  (the bug, shown)\n");
  return true;
}

bool demo_clean(const char* title, std::vector<outcome> (*run)(const std::vector<request>&),
                const std::vector<request>& requests) {
  std::printf("%s\n", title);
  const int wrong = print_outcomes(run(requests));
  if (wrong != 0) {
    std::printf("  FAIL: %d requests ran as someone else\n", wrong);
    return false;
  }
  std::printf("  no request ran as someone else\n");
  return true;
}

bool demo_raw(const std::vector<request>& requests) {
  std::printf("--raw: ctxpool::thread_pool, the unchanged handler with its raw thread_local\n");
  const int wrong = print_outcomes(run_raw(requests));
  std::printf(
      "  %d of %d anonymous requests ran as someone else on this run (how many depends on\n"
      "  which worker each request landed on; a plain thread_local is not wiped).\n"
      "  CTXPOOL_DIAGNOSTICS=residue reports the read of auth_token in every run.\n",
      wrong, anonymous_count(requests));
  return true;
}

bool demo_pool(const std::vector<request>& requests) {
  return demo_clean("--pool: ctxpool::thread_pool, ctxpool::thread_local_var<std::string>",
                    run_pool, requests);
}

bool demo_fixed(const std::vector<request>& requests) {
  return demo_clean("--fixed: ctxpool::thread_pool, ctxpool::context_var<std::string>", run_fixed,
                    requests);
}

bool demo_watched(const std::vector<request>& requests) {
  return demo_clean("--watched: ctxpool::thread_pool, raw thread_local + watch_thread_local",
                    run_watched, requests);
}

constexpr const char* usage_text =
    "usage: %s [--naive | --raw | --pool | --fixed | --watched | --help]\n"
    "  --naive    raw thread_local on a std::thread pool: anonymous requests run as someone else\n"
    "  --raw      the same handler unchanged on ctxpool::thread_pool (find it with\n"
    "             CTXPOOL_DIAGNOSTICS=residue)\n"
    "  --pool     ctxpool::thread_local_var: wiped after every task\n"
    "  --fixed    ctxpool::context_var set by the submitter: the cure\n"
    "  --watched  raw thread_local registered with ctxpool::watch_thread_local\n"
    "  (none)     --naive, --pool and --fixed with an explanation\n";

int usage(const char* argv0) {
  std::fprintf(stderr, usage_text, argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<request> requests = make_requests();
  if (argc > 2) return usage(argv[0]);
  if (argc == 2) {
    const std::string_view mode = argv[1];
    if (mode == "--help" || mode == "-h") {
      std::printf(usage_text, argv[0]);
      return 0;
    }
    if (mode == "--naive") return demo_naive(requests) ? 0 : 1;
    if (mode == "--raw") return demo_raw(requests) ? 0 : 1;
    if (mode == "--pool") return demo_pool(requests) ? 0 : 1;
    if (mode == "--fixed") return demo_fixed(requests) ? 0 : 1;
    if (mode == "--watched") return demo_watched(requests) ? 0 : 1;
    return usage(argv[0]);
  }

  std::printf(
      "Twelve requests go through one handler. A middleware stores the caller's\n"
      "auth token in thread-local state; the page header reads it to show who is\n"
      "logged in. Every third request is anonymous and stores nothing.\n\n");
  bool ok = demo_naive(requests);
  std::printf(
      "\nThe worker thread is reused: each anonymous request read the token the\n"
      "previous request left on it, and was served as that user.\n\n");
  ok = demo_pool(requests) && ok;
  std::printf(
      "\nctxpool wipes a task's thread_local_var values when the task ends, so the\n"
      "anonymous requests found nothing. Run this mode with\n"
      "CTXPOOL_DIAGNOSTICS=residue and ctxpool reports each of those reads: the\n"
      "code still relies on thread-local state that another task set.\n\n");
  ok = demo_fixed(requests) && ok;
  std::printf(
      "\nThe fix: the token is a context_var set by the code that submits the\n"
      "request; each task runs in a copy of its submitter's context, so it sees\n"
      "its own caller's token or none, whichever thread runs it.\n\n"
      "Code that must keep a raw thread_local can still be protected: see --watched;\n"
      "and --raw with CTXPOOL_DIAGNOSTICS=residue finds such variables unchanged.\n");
  return ok ? 0 : 1;
}
