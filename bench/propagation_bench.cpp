// extract + inject (W3C Trace Context and Baggage) beside Beast parsing the same header block.
//
// Rows, all in one run:
// - traceparent alone, extract + inject through non-allocating carriers, in a
//   context as a pool task has one: heap allocations per iteration are counted
//   (operator new is replaced, tests/support/allocation_probe.hpp) and must be zero; the row fails otherwise;
// - 4 tracestate members + 4 baggage entries extracted from a parsed Beast
//   request, injected into non-allocating slots (ctxpool's own work:
//   full_headers_own) or into a fresh Beast `http::fields`, which adds Beast's
//   three field insertions (full_headers_beast, what a service does);
// - the peer: boost::beast::http::request_parser parsing that request's header
//   block (request line and fields), the cost every such request already pays.
// The ratio lines divide each by the peer (below 1: cheaper than Beast).
#include <ctxpool/propagation.hpp>

#include <benchmark/benchmark.h>

#include <boost/beast/http.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "support/allocation_probe.hpp"

namespace http = boost::beast::http;

// Heap allocations are counted by the replaced operator new of
// tests/support/allocation_probe.hpp, which also has the fixed carrier.
using allocation_probe::allocations;
using allocation_probe::fixed_carrier;

namespace {

constexpr std::string_view traceparent_value =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
constexpr std::string_view tracestate_value =
    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,vendor3=opaque-value-3,vendor4=opaque-value-4";
constexpr std::string_view baggage_value =
    "userId=alice,serverNode=DF%2028,isProduction=false,tenant=acme;ttl=60";

/// A request as a service receives it: the three propagation fields among the usual ones.
std::string request_text() {
  std::string text =
      "POST /api/v1/orders HTTP/1.1\r\n"
      "Host: orders.internal.example:8080\r\n"
      "User-Agent: checkout-service/2.3\r\n"
      "Accept: application/json\r\n"
      "Content-Type: application/json\r\n"
      "Content-Length: 0\r\n";
  text += "traceparent: " + std::string(traceparent_value) + "\r\n";
  text += "tracestate: " + std::string(tracestate_value) + "\r\n";
  text += "baggage: " + std::string(baggage_value) + "\r\n\r\n";
  return text;
}

void traceparent_alone(benchmark::State& state) {
  fixed_carrier in;
  in.traceparent = traceparent_value;
  fixed_carrier out;
  out.traceparent.reserve(64);
  ctxpool::context ctx;  // as a pool task runs in one
  ctx.run([&] {
    // Warm up: the context layer's per-thread block caches fill on first use.
    for (int i = 0; i < 16; ++i) {
      ctxpool::extract(in);
      ctxpool::inject(out);
    }
    const std::uint64_t before = allocations.load(std::memory_order_relaxed);
    for (auto _ : state) {
      benchmark::DoNotOptimize(ctxpool::extract(in));
      benchmark::DoNotOptimize(ctxpool::inject(out));
    }
    const std::uint64_t allocated = allocations.load(std::memory_order_relaxed) - before;
    state.counters["allocs_per_iter"] = benchmark::Counter(static_cast<double>(allocated) /
                                                           static_cast<double>(state.iterations()));
    if (allocated != 0) state.SkipWithError("extract + inject of traceparent alone allocated");
  });
}
BENCHMARK(traceparent_alone);

void full_headers_beast(benchmark::State& state) {
  const std::string text = request_text();
  http::request_parser<http::empty_body> parser;
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(text), ec);
  if (ec || !parser.is_header_done()) {
    state.SkipWithError("request did not parse");
    return;
  }
  const http::request<http::empty_body>& request = parser.get();
  ctxpool::context ctx;
  ctx.run([&] {
    const std::uint64_t before = allocations.load(std::memory_order_relaxed);
    for (auto _ : state) {
      benchmark::DoNotOptimize(ctxpool::extract(request));
      http::fields outgoing;
      benchmark::DoNotOptimize(ctxpool::inject(outgoing));
      benchmark::DoNotOptimize(outgoing);
    }
    state.counters["allocs_per_iter"] = benchmark::Counter(
        static_cast<double>(allocations.load(std::memory_order_relaxed) - before) /
        static_cast<double>(state.iterations()));
  });
}
BENCHMARK(full_headers_beast);

void full_headers_own(benchmark::State& state) {
  const std::string text = request_text();
  http::request_parser<http::empty_body> parser;
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(text), ec);
  if (ec || !parser.is_header_done()) {
    state.SkipWithError("request did not parse");
    return;
  }
  const http::request<http::empty_body>& request = parser.get();
  fixed_carrier outgoing;
  outgoing.traceparent.reserve(64);
  outgoing.tracestate.reserve(512);
  outgoing.baggage.reserve(512);
  ctxpool::context ctx;
  ctx.run([&] {
    for (int i = 0; i < 16; ++i) {
      ctxpool::extract(request);
      ctxpool::inject(outgoing);
    }
    const std::uint64_t before = allocations.load(std::memory_order_relaxed);
    for (auto _ : state) {
      benchmark::DoNotOptimize(ctxpool::extract(request));
      benchmark::DoNotOptimize(ctxpool::inject(outgoing));
    }
    state.counters["allocs_per_iter"] = benchmark::Counter(
        static_cast<double>(allocations.load(std::memory_order_relaxed) - before) /
        static_cast<double>(state.iterations()));
  });
}
BENCHMARK(full_headers_own);

void beast_parse_header_block(benchmark::State& state) {
  const std::string text = request_text();
  const std::uint64_t before = allocations.load(std::memory_order_relaxed);
  for (auto _ : state) {
    http::request_parser<http::empty_body> parser;
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(text), ec);
    benchmark::DoNotOptimize(parser.is_header_done());
  }
  state.counters["allocs_per_iter"] =
      benchmark::Counter(static_cast<double>(allocations.load(std::memory_order_relaxed) - before) /
                         static_cast<double>(state.iterations()));
}
BENCHMARK(beast_parse_header_block);

/// The console output, plus the ratios the design's target compares.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred || !(run.aggregate_name.empty() || run.aggregate_name == "median"))
        continue;
      times_[run.run_name.function_name] = run.GetAdjustedRealTime();
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double beast = times_["beast_parse_header_block"];
    if (beast <= 0) return;
    for (const char* name : {"full_headers_own", "full_headers_beast"}) {
      const double ours = times_[name];
      if (ours > 0) {
        std::printf("ratio: %s / beast_parse_header_block = %.2f (%s)\n", name, ours / beast,
                    ours < beast ? "cheaper than Beast's parse" : "NOT cheaper than Beast's parse");
      }
    }
  }

 private:
  std::map<std::string, double> times_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
