// http_server_check: drives the http_server program from outside, the way
// clients and operators meet it in production, and checks what a user who
// copies the sample relies on.
//
//   http_server_check <path to http_server> <scenario>
//
// Scenarios (each one CTest test; everything on 127.0.0.1):
//   timeouts           a silent client, a slowloris client and a client that
//                      never reads are each closed by their deadline, while
//                      others are served
//   accept_backoff     with a low descriptor limit and idle clients holding
//                      every descriptor, the server stays nearly idle (its CPU
//                      time, from /proc) and answers again once they leave
//   log_backpressure   with stdout a pipe nobody reads, requests are still
//                      answered, memory stays bounded, drops are counted and
//                      reported at exit, and SIGTERM still ends the process
//   head               HEAD gets headers without a body, and the next request
//                      on the connection is answered correctly
//   graceful_shutdown  SIGTERM under load: every request the server started is
//                      answered, as counted by the clients
//   drain_deadline     a request that outlasts the drain time is cut off there,
//                      and the server exits
//   limits             431, 413 (also instead of `100 Continue`), and
//                      `100 Continue` before a body, on one keep-alive connection
//   curl               HEAD then GET on one connection, `100 Continue` and 431,
//                      as seen by curl rather than by this program
//   smuggling          framing a proxy could read differently (Transfer-Encoding
//                      not ending in one `chunked`, with Content-Length, on
//                      HTTP/1.0; no or two Host fields) gets 400 and a close, and
//                      the would-be body is never served as a request; 1,000
//                      small headers, at once or in pieces, break the 8 KiB limit;
//                      routing matches the path exactly
//   exceptions         200 requests whose trailer field makes the parser throw
//                      each get 431 and are closed by the server (no socket
//                      left in CLOSE-WAIT); the server counts them and serves on
//   cli                a port in use is one line and exit status 1; `--help`
//                      exits 0
//   bodies             with 2 and with 4 pool threads, 300 POSTs whose 30-64 KB
//                      bodies need several reads, one at a time on a fresh
//                      connection each (so nothing else wakes the pool), are
//                      each answered (a lost I/O wake-up left some unanswered)
//
// Exits 0 when every check holds, 1 otherwise. Every wait is bounded (a hung
// server fails the check instead of stalling CI); no check is about speed.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

namespace http = boost::beast::http;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

// ---- reporting -------------------------------------------------------------------

int failed_checks = 0;

bool check(bool ok, const std::string& what) {
  std::printf("  %s %s\n", ok ? "ok:  " : "FAIL:", what.c_str());
  std::fflush(stdout);
  if (!ok) ++failed_checks;
  return ok;
}

// ---- child processes ------------------------------------------------------------------

/// Output of a child, read on a thread of its own so the child never blocks
/// on a full pipe -- unless the check wants exactly that (`stall`).
class output_reader {
 public:
  output_reader() = default;
  ~output_reader() { join(); }
  output_reader(const output_reader&) = delete;
  output_reader& operator=(const output_reader&) = delete;

  void start(int fd) {
    thread_ = std::thread([this, fd] {
      char buf[4096];
      for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        std::lock_guard lock(mutex_);
        if (text_.size() < (std::size_t{8} << 20)) text_.append(buf, static_cast<std::size_t>(n));
      }
      ::close(fd);
    });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }

 private:
  std::mutex mutex_;
  std::string text_;
  std::thread thread_;
};

/// Starts `argv` with stdout and stderr on pipes; `max_open_files` (if
/// non-zero) is the child's RLIMIT_NOFILE, set as prlimit(1) would.
pid_t spawn(const std::vector<std::string>& argv, int out_fd[2], int err_fd[2],
            rlim_t max_open_files = 0) {
  if (::pipe2(out_fd, O_CLOEXEC) != 0 || ::pipe2(err_fd, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(out_fd[1], STDOUT_FILENO);
    ::dup2(err_fd[1], STDERR_FILENO);
    if (max_open_files != 0) {
      const rlimit limit{max_open_files, max_open_files};
      if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(126);
    }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out_fd[1]);
  ::close(err_fd[1]);
  return pid;
}

/// Waits for `pid` to exit for at most `bound`; its exit status, or -1 when
/// it was killed by a signal or had to be killed because it did not exit.
int wait_exit(pid_t pid, std::chrono::milliseconds bound, bool* timed_out = nullptr) {
  const auto until = steady::now() + bound;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return -1;
    if (steady::now() > until) {
      if (timed_out) *timed_out = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(10ms);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// The http_server process under test, listening on a port it chose.
class server_process {
 public:
  struct options {
    std::vector<std::string> args;
    rlim_t max_open_files = 0;
    bool stall_stdout = false;  ///< read the first line, then never read stdout again
  };

  server_process(const std::string& program, options opts) {
    std::vector<std::string> argv{program, "--port", "0"};
    argv.insert(argv.end(), opts.args.begin(), opts.args.end());
    int out[2];
    int err[2];
    pid_ = spawn(argv, out, err, opts.max_open_files);
    err_.start(err[0]);
    // The first line names the port; read it byte by byte so that nothing
    // after it is consumed when stdout is to stall.
    std::string line;
    const auto until = steady::now() + 30s;
    while (line.find('\n') == std::string::npos && steady::now() < until) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char c = 0;
      if (::read(out[0], &c, 1) != 1) break;
      line += c;
    }
    const std::size_t at = line.find("127.0.0.1:");
    if (at == std::string::npos) {
      ::kill(pid_, SIGKILL);
      wait_exit(pid_, 10s);
      exited_ = true;
      ::close(out[0]);
      throw std::runtime_error("the server did not say where it listens; it said: " + line +
                               err_text());
    }
    port_ = static_cast<unsigned short>(std::atoi(line.c_str() + at + 10));
    if (opts.stall_stdout) {
      stalled_fd_ = out[0];  // kept open and never read: writes to it block when the pipe is full
    } else {
      out_.start(out[0]);
    }
  }

  ~server_process() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      wait_exit(pid_, 10s);
    }
    if (stalled_fd_ >= 0) ::close(stalled_fd_);
  }
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  [[nodiscard]] unsigned short port() const { return port_; }

  /// Sends `sig` and waits (at most `bound`) for the exit status.
  int stop(int sig = SIGTERM, std::chrono::milliseconds bound = 30s) {
    ::kill(pid_, sig);
    bool timed_out = false;
    const int status = wait_exit(pid_, bound, &timed_out);
    exited_ = true;
    if (stalled_fd_ >= 0) ::close(std::exchange(stalled_fd_, -1));
    out_.join();
    err_.join();
    check(!timed_out, "the server exited after the signal (killed after " +
                          std::to_string(bound.count() / 1000) + " s otherwise)");
    if (status != 0) {  // e.g. a sanitizer's report
      const std::string err = err_.text();
      std::printf("  server stderr (exit status %d):\n%s\n", status,
                  err.substr(err.size() > 4000 ? err.size() - 4000 : 0).c_str());
    }
    return status;
  }

  /// User plus system CPU time the process has used, from /proc/<pid>/stat.
  [[nodiscard]] double cpu_seconds() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(all.substr(all.rfind(')') + 2));  // after "pid (comm) "
    std::string field;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    for (int i = 3; fields >> field; ++i) {  // field 3 is the state
      if (i == 14) utime = std::stoull(field);
      if (i == 15) {
        stime = std::stoull(field);
        break;
      }
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

  /// Resident set size in KiB, from /proc/<pid>/status.
  [[nodiscard]] long rss_kib() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("VmRSS:")) return std::atol(line.c_str() + 6);
    }
    return -1;
  }

  std::string out_text() { return out_.text(); }
  std::string err_text() { return err_.text(); }

 private:
  pid_t pid_ = -1;
  unsigned short port_ = 0;
  bool exited_ = false;
  int stalled_fd_ = -1;
  output_reader out_;
  output_reader err_;
};

/// Waits (at most `bound`) until the server's stderr contains `text`.
bool wait_for_stderr(server_process& server, std::string_view text, std::chrono::seconds bound) {
  const auto until = steady::now() + bound;
  while (steady::now() < until) {
    if (server.err_text().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

/// The numbers the server prints on stderr when it stops.
struct exit_report {
  bool found = false;
  unsigned long long started = 0;
  unsigned long long answered = 0;
  unsigned long long closed_at_deadline = 0;
  unsigned long long log_lines = 0;
  unsigned long long log_dropped = 0;
  unsigned long long ended_by_exception = 0;
};

exit_report parse_exit_report(const std::string& err) {
  exit_report r;
  const std::size_t at = err.find("http_server: stopped;");
  if (at != std::string::npos) {
    r.found = std::sscanf(err.c_str() + at,
                          "http_server: stopped; %llu requests started, %llu answered; %llu "
                          "connections closed at the drain deadline; log: %llu lines, %llu "
                          "dropped; %llu connections ended by an exception",
                          &r.started, &r.answered, &r.closed_at_deadline, &r.log_lines,
                          &r.log_dropped, &r.ended_by_exception) == 6;
  }
  return r;
}

// ---- a client on a plain socket -------------------------------------------------------------

/// One HTTP/1.1 connection; responses are parsed with Beast's parser.
class connection {
 public:
  /// Connects to 127.0.0.1:`port`. `receive_buffer` (if non-zero) shrinks
  /// SO_RCVBUF, for a client whose window fills quickly.
  explicit connection(unsigned short port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    if (receive_buffer != 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      const std::string why = std::strerror(errno);
      ::close(fd_);
      throw std::runtime_error("connect: " + why);
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~connection() { close(); }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }
  /// Closes with a reset (RST) rather than an orderly close.
  void reset() {
    const linger abort{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    close();
  }
  [[nodiscard]] int fd() const { return fd_; }

  /// Sends all of `bytes`; false when the connection is gone.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  enum class outcome {
    response,       ///< a whole response
    closed_before,  ///< the server closed before sending any of a response
    cut,            ///< the server closed in the middle of a response
    malformed,      ///< not HTTP, e.g. a body where none belongs
    no_answer,      ///< nothing for `bound`
  };

  /// Reads one response. `to_head` says it answers a HEAD (no body follows).
  outcome read(http::response<http::string_body>& out, bool to_head = false,
               std::chrono::milliseconds bound = 30s) {
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(std::uint64_t{1} << 20);
    if (to_head) parser.skip(true);
    const auto until = steady::now() + bound;
    for (;;) {
      if (!pending_.empty()) {
        boost::beast::error_code ec;
        const std::size_t used = parser.put(boost::asio::buffer(pending_), ec);
        pending_.erase(0, used);
        if (ec && ec != http::error::need_more) return outcome::malformed;
        if (parser.is_done()) {
          out = parser.release();
          return outcome::response;
        }
        if (!ec && used > 0) continue;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now());
      if (left.count() <= 0) return outcome::no_answer;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 200))) <= 0) continue;
      char buf[16384];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return parser.got_some() || !pending_.empty() ? outcome::cut : outcome::closed_before;
      pending_.append(buf, static_cast<std::size_t>(n));
    }
  }

  /// Waits (at most `bound`) for the server to end the connection -- a
  /// close or a reset -- reading and counting whatever it still sends.
  bool wait_closed(std::chrono::milliseconds bound, std::size_t* bytes_received = nullptr) {
    const auto until = steady::now() + bound;
    while (steady::now() < until) {
      pollfd p{fd_, POLLIN | POLLRDHUP, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[16384];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
      if (n > 0 && bytes_received) *bytes_received += static_cast<std::size_t>(n);
    }
    return false;
  }

 private:
  int fd_ = -1;
  std::string pending_;  // received, not yet parsed
};

std::string get_request(std::string_view target, std::string_view id,
                        std::string_view method = "GET") {
  std::string r;
  r.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  if (!id.empty()) r.append("X-Request-Id: ").append(id).append("\r\n");
  return r + "\r\n";
}

/// "<kind><client>-<n>", built up in place: GCC 12 warns (-Wrestrict) about
/// the same built with operator+.
std::string numbered_id(char kind, int client, int n) {
  std::string id(1, kind);
  id += std::to_string(client);
  id += '-';
  id += std::to_string(n);
  return id;
}

/// Sends `request` on a new connection and reads the answer into `res`;
/// false when there was none.
bool exchange(unsigned short port, const std::string& request,
              http::response<http::string_body>& res) {
  try {
    connection c(port);
    return c.send(request) && c.read(res) == connection::outcome::response;
  } catch (const std::exception&) {
    return false;
  }
}

/// One GET on a new connection; true when it is answered with 200 and its own id.
bool hello_works(unsigned short port, const std::string& id) {
  http::response<http::string_body> res;
  return exchange(port, get_request("/hello", id), res) && res.result() == http::status::ok &&
         res.body() == "hello from request " + id + "\n";
}

// ---- the scenarios ------------------------------------------------------------------------

void check_timeouts(const std::string& program) {
  server_process server(
      program, {{"--idle-timeout", "1s", "--read-timeout", "2s", "--write-timeout", "2s"}});

  // Connects and says nothing: the idle deadline closes it.
  connection silent(server.port());
  std::size_t silent_got = 0;
  check(silent.wait_closed(20s, &silent_got) && silent_got == 0,
        "a client that sends nothing is closed by the idle timeout");

  // Slowloris: a request line, then a header a byte at a time, each byte well
  // within the idle timeout. Only the read deadline, which covers the whole
  // request, can end it; 300 bytes at 50 ms would take 15 s.
  connection slow(server.port());
  slow.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  bool slow_closed = false;
  std::size_t slow_got = 0;
  for (int i = 0; i < 300 && !slow_closed; ++i) {
    slow_closed = slow.wait_closed(50ms, &slow_got) || !slow.send("a");
  }
  if (!slow_closed) slow_closed = slow.wait_closed(5s, &slow_got);
  check(slow_closed && slow_got == 0,
        "a client trickling its headers a byte at a time is closed by the read timeout");
  check(hello_works(server.port(), "while-slow"), "others are served meanwhile");

  // Pipelines requests and never reads: the server's writes stall, and the
  // write deadline closes the connection.
  connection deaf(server.port(), 4096);
  const std::string request = get_request("/hello", "deaf");
  ::fcntl(deaf.fd(), F_SETFL, ::fcntl(deaf.fd(), F_GETFL) | O_NONBLOCK);
  std::size_t sent = 0;
  for (int i = 0; i < 200000; ++i) {  // until our own send buffer is full
    const ssize_t n = ::send(deaf.fd(), request.data(), request.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  bool deaf_closed = false;
  for (int i = 0; i < 200 && !deaf_closed; ++i) {  // up to 20 s, without reading
    pollfd p{deaf.fd(), POLLRDHUP, 0};
    deaf_closed = ::poll(&p, 1, 100) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }
  check(sent > 0 && deaf_closed,
        "a client that never reads its responses is closed by the write "
        "timeout (" +
            std::to_string(sent) + " bytes of requests sent)");
  check(hello_works(server.port(), "after-deaf"), "the server still answers afterwards");
  check(server.stop() == 0, "the server exits with status 0 on SIGTERM");
}

void check_accept_backoff(const std::string& program) {
  // 32 descriptors: a handful for the runtime, the rest for connections.
  server_process server(program, {{"--idle-timeout", "120s"}, 32});
  // First a client that resets the connection halfway through a request.
  // (In an ASan+UBSan build this also matters: the server's first system
  // error_code is then not made while it has no descriptor left, when
  // UBSan's vptr check, which probes memory through a pipe, reports a
  // false "invalid vptr" if its type cache has not seen that category yet.)
  {
    connection rude(server.port());
    rude.send("GET /hel");
    std::this_thread::sleep_for(200ms);  // let the server start reading it
    rude.reset();
  }
  check(hello_works(server.port(), "after-reset"),
        "a client resetting mid-request disturbs no one");
  std::vector<std::unique_ptr<connection>> idle;
  for (int i = 0; i < 48; ++i) idle.push_back(std::make_unique<connection>(server.port()));
  check(wait_for_stderr(server, "accept failed", 30s),
        "idle clients exhaust the server's descriptors (it reports the failing accept)");

  // The connections beyond the limit wait in the backlog, so the listening
  // socket stays readable: a loop that retried at once would spin here.
  connection waiting(server.port());
  waiting.send(get_request("/hello", "queued"));
  const double cpu_before = server.cpu_seconds();
  std::this_thread::sleep_for(3s);
  const double cpu_used = server.cpu_seconds() - cpu_before;
  char what[160];
  std::snprintf(what, sizeof what,
                "while out of descriptors the server used %.2f s of CPU in 3 s (bound 0.30 s)",
                cpu_used);
  check(cpu_used < 0.30, what);

  idle.clear();  // descriptors free up
  http::response<http::string_body> res;
  check(waiting.read(res, false, 30s) == connection::outcome::response &&
            res.result() == http::status::ok && res.body() == "hello from request queued\n",
        "the request queued during the storm is answered once descriptors are free");
  check(wait_for_stderr(server, "accepting again", 10s), "the server reports that it recovered");
  check(hello_works(server.port(), "after-storm"), "a new connection is served");
  check(server.stop() == 0, "the server exits with status 0 on SIGTERM");
}

void check_log_backpressure(const std::string& program) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in quarantine (256 MiB): without this the RSS
  // bound would measure the quarantine, not the log queue.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string options =
      std::string(asan ? asan : "") + ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0";
  ::setenv("ASAN_OPTIONS", options.c_str(), 1);
#endif
  server_process server(
      program, {{"--log-queue", "256", "--threads", "2", "--drain-timeout", "2s"}, 0, true});
  // Long targets make long log lines: an unbounded queue would grow by about
  // a kilobyte per request.
  const std::string target = "/hello?pad=" + std::string(1000, 'p');
  std::atomic<int> answered{0};
  std::atomic<int> wrong{0};
  auto load = [&](int client, int count) {
    try {
      connection c(server.port());
      for (int n = 0; n < count; ++n) {
        const std::string id = numbered_id('l', client, n);
        http::response<http::string_body> res;
        if (!c.send(get_request(target, id)) || c.read(res) != connection::outcome::response ||
            res.body() != "hello from request " + id + "\n") {
          wrong.fetch_add(1);
          return;
        }
        answered.fetch_add(1);
      }
    } catch (const std::exception&) {
      wrong.fetch_add(1);
    }
  };
  auto run_clients = [&](int per_client) {
    std::vector<std::thread> clients;
    for (int i = 0; i < 4; ++i) clients.emplace_back(load, i, per_client);
    for (auto& t : clients) t.join();
  };
  run_clients(500);  // the pipe is full long before this ends
  const long rss_before = server.rss_kib();
  run_clients(6000);
  const long rss_after = server.rss_kib();
  check(wrong.load() == 0 && answered.load() == 4 * 6500,
        std::to_string(answered.load()) + " of 26000 requests answered with stdout stalled");
  char what[160];
  std::snprintf(what, sizeof what,
                "memory stayed bounded: RSS %ld KiB -> %ld KiB over 24000 requests (bound +8 MiB)",
                rss_before, rss_after);
  check(rss_before > 0 && rss_after - rss_before < 8 * 1024, what);
  // Its promise: out within the drain timeout plus the log's one-second
  // grace. The bound leaves room for a loaded machine; waiting on the stalled
  // log line by line took about 30 s.
  check(server.stop(SIGTERM, 15s) == 0,
        "the server exits with status 0 on SIGTERM although stdout is stalled");
  const exit_report report = parse_exit_report(server.err_text());
  check(report.found && report.log_dropped > 0,
        "it reports the log lines it dropped (" + std::to_string(report.log_dropped) + ")");
}

void check_head(const std::string& program) {
  server_process server(program, {});
  connection c(server.port());
  http::response<http::string_body> head;
  http::response<http::string_body> get;
  // One after the other, then pipelined in one write.
  for (int round = 0; round < 2; ++round) {
    const std::string suffix = std::to_string(round);
    const std::string head_req = get_request("/hello", "head-" + suffix, "HEAD");
    const std::string get_req = get_request("/hello", "gets-" + suffix);
    if (round == 0) {
      c.send(head_req);
      check(
          c.read(head, true) == connection::outcome::response && head.result() == http::status::ok,
          "HEAD /hello is answered with 200");
      c.send(get_req);
    } else {
      c.send(head_req + get_req);
      check(
          c.read(head, true) == connection::outcome::response && head.result() == http::status::ok,
          "a pipelined HEAD /hello is answered with 200");
    }
    // Same id length, same body length: the HEAD says how long the GET's body is.
    const std::string length = std::to_string(("hello from request gets-" + suffix + "\n").size());
    check(head[http::field::content_length] == length && head.body().empty(),
          "its headers announce the GET's " + length + "-byte body (Content-Length: " +
              std::string(head[http::field::content_length]) + ")");
    check(c.read(get) == connection::outcome::response && get.result() == http::status::ok &&
              get.body() == "hello from request gets-" + suffix + "\n",
          "the GET after it on the same connection gets its own response, so the HEAD had no body");
  }
  // A 404 has a body for GET; for HEAD it must not.
  c.send(get_request("/missing", "head-404", "HEAD") + get_request("/hello", "after-404"));
  check(c.read(head, true) == connection::outcome::response &&
            head.result() == http::status::not_found,
        "HEAD /missing is answered with 404");
  check(c.read(get) == connection::outcome::response &&
            get.body() == "hello from request after-404\n",
        "and the next request on the connection is answered correctly");
  check(server.stop() == 0, "the server exits with status 0 on SIGTERM");
}

void check_graceful_shutdown(const std::string& program) {
  // Each request waits 50 ms for its "database", so at any moment most
  // clients have a request in flight.
  server_process server(program, {{"--lookup-delay", "50ms", "--drain-timeout", "30s"}});
  struct tally {
    int answered = 0;
    int answered_with_close = 0;
    int unanswered = 0;  // the server closed before answering: allowed, if it never started it
    std::string failure;
  };
  constexpr int clients = 16;
  std::vector<tally> tallies(clients);
  std::atomic<int> total{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      tally& t = tallies[static_cast<std::size_t>(i)];
      try {
        connection c(server.port());
        for (int n = 0; n < 100000; ++n) {
          const std::string id = numbered_id('s', i, n);
          http::response<http::string_body> res;
          if (!c.send(get_request("/hello", id))) {
            ++t.unanswered;
            return;
          }
          const connection::outcome got = c.read(res, false, 60s);
          if (got == connection::outcome::closed_before) {
            ++t.unanswered;
            return;
          }
          if (got != connection::outcome::response || res.result() != http::status::ok ||
              res.body() != "hello from request " + id + "\n") {
            t.failure = id + ": cut off, malformed, unanswered or wrong";
            return;
          }
          ++t.answered;
          total.fetch_add(1);
          if (!res.keep_alive()) {
            ++t.answered_with_close;
            return;
          }
        }
        t.failure = "the server never closed the connection";
      } catch (const std::exception& e) {
        t.failure = e.what();
      }
    });
  }
  const auto until = steady::now() + 60s;
  while (total.load() < 300 && steady::now() < until) std::this_thread::sleep_for(10ms);
  const int status = server.stop(SIGTERM, 60s);
  for (auto& t : threads) t.join();

  tally sum;
  for (const tally& t : tallies) {
    sum.answered += t.answered;
    sum.answered_with_close += t.answered_with_close;
    sum.unanswered += t.unanswered;
    if (!t.failure.empty()) check(false, "client: " + t.failure);
  }
  const exit_report report = parse_exit_report(server.err_text());
  check(status == 0 && report.found, "the server exits with status 0 and reports its counts");
  check(report.started == report.answered && report.answered == static_cast<unsigned>(sum.answered),
        "every request the server started was answered: started " + std::to_string(report.started) +
            ", answered " + std::to_string(report.answered) + ", received by the clients " +
            std::to_string(sum.answered));
  check(sum.answered_with_close > 0,
        std::to_string(sum.answered_with_close) +
            " requests in flight at SIGTERM were finished, with Connection: close (" +
            std::to_string(sum.unanswered) + " sent to connections closed between requests)");
  check(report.closed_at_deadline == 0, "none was cut off at the drain deadline");
}

void check_drain_deadline(const std::string& program) {
  // The "database" takes 20 s; the server may drain for 500 ms.
  server_process server(program, {{"--lookup-delay", "20s", "--drain-timeout", "500ms"}});
  connection slow(server.port());
  slow.send(get_request("/hello", "too-slow"));
  connection idle(server.port());
  http::response<http::string_body> res;
  // The request is under way once the server has logged it; its log line
  // is on stdout, which the check reads.
  const auto until = steady::now() + 30s;
  while (server.out_text().find("req too-slow trace ") == std::string::npos &&
         steady::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  // Far below the 20 s the request would take: the drain deadline ended it.
  const int status = server.stop(SIGTERM, 15s);
  check(status == 0, "the server exits with status 0 once the drain time is up");
  check(slow.read(res, false, 5s) == connection::outcome::closed_before,
        "the request still under way then is closed without an answer");
  check(idle.wait_closed(5s), "the idle connection is closed too");
  const exit_report report = parse_exit_report(server.err_text());
  check(
      report.found && report.started == 1 && report.answered == 0 && report.closed_at_deadline == 1,
      "it reports 1 request started, 0 answered, 1 connection closed at the drain deadline");
}

void check_limits(const std::string& program) {
  server_process server(program, {});
  http::response<http::string_body> res;
  check(exchange(server.port(),
                 "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'h') + "\r\n\r\n",
                 res) &&
            res.result() == http::status::request_header_fields_too_large && !res.keep_alive(),
        "headers over 8 KiB get 431 and the connection is closed");
  check(exchange(server.port(),
                 "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                 "Expect: 100-continue\r\n\r\n",
                 res) &&
            res.result() == http::status::payload_too_large && !res.keep_alive(),
        "a body announced over 64 KiB gets 413 instead of 100 Continue, before it is sent");
  {
    connection c(server.port());
    c.send(
        "POST /hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: cont\r\nContent-Length: 5\r\n"
        "Expect: 100-continue\r\n\r\n");
    check(c.read(res, false, 30s) == connection::outcome::response &&
              res.result() == http::status::continue_,
          "Expect: 100-continue gets 100 Continue before the body is sent");
    c.send("abcde");
    check(c.read(res) == connection::outcome::response && res.result() == http::status::ok &&
              res.body() == "hello from request cont\nreceived 5 bytes\n",
          "then the body is read and the request answered");
    c.send(get_request("/hello", "next"));
    check(c.read(res) == connection::outcome::response && res.body() == "hello from request next\n",
          "and the connection serves the next request");
  }
  check(server.stop() == 0, "the server exits with status 0 on SIGTERM");
}

/// Runs curl with `args`; its exit status, stdout and stderr.
struct curl_result {
  int status = -1;
  std::string out;
  std::string err;
};

curl_result run_curl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"curl", "--silent", "--show-error", "--max-time", "30"};
  argv.insert(argv.end(), args.begin(), args.end());
  int out[2];
  int err[2];
  const pid_t pid = spawn(argv, out, err);
  curl_result r;
  {
    output_reader out_reader;
    output_reader err_reader;
    out_reader.start(out[0]);
    err_reader.start(err[0]);
    r.status = wait_exit(pid, 60s);
    out_reader.join();
    err_reader.join();
    r.out = out_reader.text();
    r.err = err_reader.text();
  }
  return r;
}

void check_with_curl(const std::string& program) {
  server_process server(program, {});
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/hello";

  const curl_result head =
      run_curl({"--verbose", "--head", "-H", "X-Request-Id: curl-head", url, "--next", "--silent",
                "--show-error", "-H", "X-Request-Id: curl-gets", url});
  check(head.status == 0,
        "curl HEAD then GET exits 0" + (head.status == 0 ? std::string() : ": " + head.err));
  check(head.err.find("Re-using existing connection") != std::string::npos,
        "curl sent both requests on one connection");
  const std::string body = "hello from request curl-gets\n";
  check(head.out.starts_with("HTTP/1.1 200 OK\r\n") &&
            head.out.find("Content-Length: " + std::to_string(body.size()) + "\r\n") !=
                std::string::npos &&
            head.out.ends_with("\r\n\r\n" + body),
        "curl got the HEAD's headers, Content-Length included, and then exactly the GET's body");

  const curl_result cont = run_curl({"--verbose", "-H", "Expect: 100-continue", "-H",
                                     "X-Request-Id: curl-post", "--data-binary", "abcde", url});
  check(cont.status == 0 && cont.err.find("< HTTP/1.1 100 Continue") != std::string::npos &&
            cont.out == "hello from request curl-post\nreceived 5 bytes\n",
        "curl with Expect: 100-continue is told to go on and its body is read");

  const curl_result big = run_curl({"--output", "/dev/null", "--write-out", "%{http_code}", "-H",
                                    "X-Big: " + std::string(9000, 'c'), url});
  check(big.status == 0 && big.out == "431",
        "curl with 9 KB of headers gets 431 (got " + big.out + ")");
  check(server.stop() == 0, "the server exits with status 0 on SIGTERM");
}

/// Sends `request` on a new connection (in pieces of `piece` bytes, each
/// sent on its own, when non-zero) and reads what comes back until the
/// server closes: the first response into `res`, and whether anything
/// followed it. False when no response came or the server did not close.
bool exchange_and_close(unsigned short port, const std::string& request,
                        http::response<http::string_body>& res, bool& more_followed,
                        std::size_t piece = 0) {
  try {
    connection c(port);
    std::string_view rest = request;
    while (!rest.empty()) {
      const std::size_t n = piece == 0 ? rest.size() : std::min(piece, rest.size());
      if (!c.send(rest.substr(0, n))) break;  // the server may answer and close early
      rest.remove_prefix(n);
      if (piece != 0) std::this_thread::sleep_for(2ms);
    }
    if (c.read(res) != connection::outcome::response) return false;
    std::size_t after = 0;
    const bool closed = c.wait_closed(10s, &after);
    more_followed = after > 0;
    return closed;
  } catch (const std::exception&) {
    return false;
  }
}

void check_smuggling(const std::string& program) {
  server_process server(program, {});
  // Each would-be body is a complete request of its own: a server that
  // misreads the framing answers it as a second request.
  const std::string hidden = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: smuggled\r\n\r\n";
  const std::string chunked_hidden = [&] {
    char size[16];
    std::snprintf(size, sizeof size, "%zx", hidden.size());
    return std::string(size) + "\r\n" + hidden + "\r\n0\r\n\r\n";
  }();
  struct framing_case {
    const char* what;
    std::string head;  // request line and fields, without the blank line
    std::string body;
    http::status want;
  };
  const std::string post = "POST /hello HTTP/1.1\r\nHost: x\r\n";
  const std::vector<framing_case> cases{
      {"Transfer-Encoding: chunked, chunked", post + "Transfer-Encoding: chunked, chunked\r\n",
       chunked_hidden, http::status::bad_request},
      {"Transfer-Encoding: xchunked", post + "Transfer-Encoding: xchunked\r\n", chunked_hidden,
       http::status::bad_request},
      {"Transfer-Encoding: chunked, identity", post + "Transfer-Encoding: chunked, identity\r\n",
       chunked_hidden, http::status::bad_request},
      {"chunked twice over two fields",
       post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", chunked_hidden,
       http::status::bad_request},
      {"Transfer-Encoding with Content-Length",
       post + "Content-Length: " + std::to_string(hidden.size()) +
           "\r\nTransfer-Encoding: chunked\r\n",
       chunked_hidden, http::status::bad_request},
      {"Transfer-Encoding on HTTP/1.0",
       "POST /hello HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n", chunked_hidden,
       http::status::bad_request},
      {"Transfer-Encoding: gzip, chunked (not decoded here)",
       post + "Transfer-Encoding: gzip, chunked\r\n", chunked_hidden,
       http::status::not_implemented},
      {"HTTP/1.1 with two Host fields", "GET /hello HTTP/1.1\r\nHost: x\r\nHost: y\r\n", hidden,
       http::status::bad_request},
      {"HTTP/1.1 without Host", "GET /hello HTTP/1.1\r\n", hidden, http::status::bad_request},
      {"HTTP/1.0 with two Host fields", "GET /hello HTTP/1.0\r\nHost: x\r\nHost: y\r\n", hidden,
       http::status::bad_request},
  };
  for (const framing_case& f : cases) {
    http::response<http::string_body> res;
    bool more = false;
    const bool got = exchange_and_close(server.port(), f.head + "\r\n" + f.body, res, more);
    check(got && res.result() == f.want && !res.keep_alive() && !more,
          std::string(f.what) + ": " + std::to_string(static_cast<unsigned>(f.want)) +
              ", closed, nothing served after it (got " +
              (got ? std::to_string(res.result_int()) : std::string("no answer or no close")) +
              (more ? ", then more bytes" : "") + ")");
  }
  {
    // The same smuggled bytes in a well-framed body are a body, not a request.
    http::response<http::string_body> res;
    bool more = false;
    check(exchange_and_close(server.port(),
                             post +
                                 "Transfer-Encoding: chunked\r\nX-Request-Id: framed\r\n"
                                 "Connection: close\r\n\r\n" +
                                 chunked_hidden,
                             res, more) &&
              res.result() == http::status::ok &&
              res.body() == "hello from request framed\nreceived " + std::to_string(hidden.size()) +
                                " bytes\n" &&
              !more,
          "Transfer-Encoding: chunked is served, its body read as a body");
  }
  {
    // 1,000 small fields, 9.9 KB in all, in one write and in 512-byte
    // pieces: Beast's own limit counts only what one parse has not consumed
    // yet, and in one write the request reached the handler.
    std::string many = "GET /hello HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 1000; ++i) many += "X-F" + std::to_string(10 + i % 90) + ": v\r\n";
    many += "\r\n";
    http::response<http::string_body> res;
    bool more = false;
    for (const std::size_t piece : {std::size_t{0}, std::size_t{512}}) {
      const bool got = exchange_and_close(server.port(), many, res, more, piece);
      check(got && res.result() == http::status::request_header_fields_too_large,
            "1,000 small header fields (" + std::to_string(many.size()) + " bytes, " +
                (piece == 0 ? "in one write" : "in 512-byte pieces") + ") get 431 (got " +
                (got ? std::to_string(res.result_int()) : std::string("none")) + ")");
    }
    std::string few = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: fields\r\n";
    for (int i = 0; i < 101; ++i) few += "X-F: v\r\n";
    few += "\r\n";
    check(exchange_and_close(server.port(), few, res, more) &&
              res.result() == http::status::request_header_fields_too_large,
          "104 header fields in 1 KB get 431 (the limit is 100 fields)");
  }
  // Routing is an exact path match; the query does not take part.
  for (const char* target : {"/hello%00.txt", "/hellox", "/hello/", "/hello/../hello", "/HELLO"}) {
    http::response<http::string_body> res;
    check(exchange(server.port(), get_request(target, "route"), res) &&
              res.result() == http::status::not_found,
          std::string(target) + " is not /hello: 404");
  }
  check(hello_works(server.port(), "exact"), "/hello is served");
  {
    http::response<http::string_body> res;
    check(exchange(server.port(), get_request("/hello?a=1", "query"), res) &&
              res.result() == http::status::ok && res.body() == "hello from request query\n",
          "/hello?a=1 is served");
  }
  const int status = server.stop();
  check(status == 0, "the server exits with status 0 on SIGTERM");
  const exit_report report = parse_exit_report(server.err_text());
  check(report.found && report.answered == report.started,
        "every request it started was answered (" + std::to_string(report.started) + ")");
}

/// Server-side sockets on `port` in CLOSE-WAIT (the peer closed, the server did not).
int close_wait_count(unsigned short port) {
  int count = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the column names
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      const std::size_t colon = local.rfind(':');
      if (colon == std::string::npos) continue;
      const unsigned long local_port = std::stoul(local.substr(colon + 1), nullptr, 16);
      if (local_port == port && state == "08") ++count;  // TCP_CLOSE_WAIT
    }
  }
  return count;
}

void check_exceptions(const std::string& program) {
  server_process server(program, {{"--read-timeout", "20s"}});
  // A chunked body whose trailer field is over 64 KiB: Beast's fields throw
  // std::length_error storing it.
  const std::string request =
      "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
      "X-Trailer: " +
      std::string(70 * 1024, 't') + "\r\n\r\n";
  constexpr int total = 200;
  std::atomic<int> answered{0};
  std::atomic<int> closed_by_server{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      for (int n = 0; n < total / 8; ++n) {
        try {
          connection c(server.port());
          c.send(request);
          http::response<http::string_body> res;
          if (c.read(res, false, 20s) == connection::outcome::response &&
              res.result() == http::status::request_header_fields_too_large && !res.keep_alive()) {
            answered.fetch_add(1);
          }
          // The server ends the connection itself, well before the read deadline.
          if (c.wait_closed(10s)) closed_by_server.fetch_add(1);
        } catch (const std::exception&) {
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  check(answered.load() == total,
        std::to_string(answered.load()) + " of 200 requests with a 70 KiB trailer field got 431");
  check(closed_by_server.load() == total,
        std::to_string(closed_by_server.load()) + " of 200 connections were closed by the server");
  int waiting = close_wait_count(server.port());
  for (int i = 0; i < 100 && waiting != 0; ++i) {
    std::this_thread::sleep_for(50ms);
    waiting = close_wait_count(server.port());
  }
  check(waiting == 0, "no server socket is left in CLOSE-WAIT (" + std::to_string(waiting) + ")");
  check(hello_works(server.port(), "after-throws"), "the server serves on");
  check(server.stop() == 0, "the server exits with status 0 on SIGTERM");
  const exit_report report = parse_exit_report(server.err_text());
  check(report.found && report.ended_by_exception == total,
        "it reports 200 connections ended by an exception (" +
            std::to_string(report.ended_by_exception) + ")");
}

/// Runs `program` with `args` to its exit (at most 30 s); status, stdout, stderr.
struct run_result {
  int status = -1;
  std::string out;
  std::string err;
};

run_result run_program(std::vector<std::string> argv) {
  int out[2];
  int err[2];
  const pid_t pid = spawn(argv, out, err);
  run_result r;
  output_reader out_reader;
  output_reader err_reader;
  out_reader.start(out[0]);
  err_reader.start(err[0]);
  r.status = wait_exit(pid, 30s);
  out_reader.join();
  err_reader.join();
  r.out = out_reader.text();
  r.err = err_reader.text();
  return r;
}

void check_cli(const std::string& program) {
  server_process first(program, {});
  const run_result taken = run_program({program, "--port", std::to_string(first.port())});
  const bool one_line = std::count(taken.err.begin(), taken.err.end(), '\n') == 1;
  check(taken.status == 1 && one_line &&
            taken.err.find("cannot listen on 127.0.0.1:" + std::to_string(first.port())) !=
                std::string::npos &&
            taken.err.find("terminate") == std::string::npos,
        "a port in use: exit status 1 and one line on stderr (status " +
            std::to_string(taken.status) + "): " + taken.err.substr(0, 200));
  check(hello_works(first.port(), "still-first"), "the server holding the port is undisturbed");
  check(first.stop() == 0, "which exits with status 0 on SIGTERM");
  const run_result help = run_program({program, "--help"});
  check(
      help.status == 0 && help.out.starts_with("usage: ") && help.err.empty(),
      "--help prints the usage on stdout and exits 0 (status " + std::to_string(help.status) + ")");
  const run_result bad = run_program({program, "--no-such-flag"});
  check(bad.status == 2 && bad.err.starts_with("usage: "),
        "an unknown flag prints the usage on stderr and exits 2");
}

void check_bodies(const std::string& program) {
  for (const char* threads : {"2", "4"}) {
    server_process server(program, {{"--threads", threads, "--no-request-log"}});
    int answered = 0;
    int unanswered = 0;
    for (int i = 0; i < 300; ++i) {
      const std::size_t size = 30'000 + static_cast<std::size_t>(i) * 7'919 % 34'000;
      std::string request = "POST /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: ";
      request += numbered_id('b', 0, i);
      request += "\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n";
      request.append(size, 'b');
      http::response<http::string_body> res;
      try {
        connection c(server.port());
        // Generous, not a speed bound: a healthy server answers in
        // milliseconds, one that lost the completion never.
        const bool ok = c.send(request) &&
                        c.read(res, false, 20s) == connection::outcome::response &&
                        res.result() == http::status::ok &&
                        res.body() == "hello from request " + numbered_id('b', 0, i) +
                                          "\nreceived " + std::to_string(size) + " bytes\n";
        ++(ok ? answered : unanswered);
      } catch (const std::exception&) {
        ++unanswered;
      }
    }
    check(unanswered == 0, std::string("with ") + threads + " threads, " +
                               std::to_string(answered) +
                               " of 300 POSTs with 30-64 KB bodies answered, each on its own "
                               "connection, one at a time");
    check(server.stop() == 0, "the server exits with status 0 on SIGTERM");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, std::function<void(const std::string&)>> scenarios{
      {"timeouts", check_timeouts},
      {"accept_backoff", check_accept_backoff},
      {"log_backpressure", check_log_backpressure},
      {"head", check_head},
      {"graceful_shutdown", check_graceful_shutdown},
      {"drain_deadline", check_drain_deadline},
      {"limits", check_limits},
      {"curl", check_with_curl},
      {"smuggling", check_smuggling},
      {"exceptions", check_exceptions},
      {"cli", check_cli},
      {"bodies", check_bodies},
  };
  if (argc != 3 || !scenarios.contains(argv[2])) {
    std::fprintf(stderr, "usage: %s <path to http_server> <scenario>\nscenarios:", argv[0]);
    for (const auto& [name, run] : scenarios) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  std::printf("http_server_check %s\n", argv[2]);
  try {
    scenarios.at(argv[2])(argv[1]);
  } catch (const std::exception& e) {
    check(false, std::string("unexpected error: ") + e.what());
  }
  std::printf("%s\n", failed_checks == 0 ? "OK" : "FAIL");
  return failed_checks == 0 ? 0 : 1;
}
