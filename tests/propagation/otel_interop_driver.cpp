// ctxpool's side of the OpenTelemetry JS interop test (otel/interop.js runs it).
//
// Reads a JSON array of cases on stdin; for each, extracts the given header
// fields with ctxpool (and applies the case's programmatic changes), injects
// into a fresh carrier, and writes what it extracted and what it injected as
// one JSON array on stdout. The comparison with OpenTelemetry is the script's.
#include <ctxpool/propagation.hpp>

#include <boost/beast/http/fields.hpp>
#include <boost/json.hpp>
#include <boost/json/src.hpp>  // header-only Boost.JSON, in this one translation unit

#include <iostream>
#include <iterator>
#include <map>
#include <string>

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

std::string str(const json::value& v) { return std::string(v.as_string()); }

/// Properties as they are written on the wire: `;`-joined `key` or `key=encoded`.
std::string properties_wire(const ctxpool::baggage_entry& entry) {
  ctxpool::baggage single;
  single.set("k", "", entry.properties);
  const std::string text = single.format();  // "k=;p1;p2=v"
  return text.size() > 3 ? text.substr(3) : std::string();
}

json::value describe(const ctxpool::trace_context& trace, const ctxpool::baggage& bag,
                     bool with_trace) {
  json::object out;
  if (with_trace) {
    out["trace"] = json::object{{"traceId", trace.trace.to_string()},
                                {"spanId", trace.parent.to_string()},
                                {"flags", trace.flags.bits}};
    out["tracestate"] = trace.state.format();
  } else {
    out["trace"] = nullptr;
    out["tracestate"] = "";
  }
  json::array entries;
  for (const ctxpool::baggage_entry& entry : bag.entries()) {
    entries.push_back(json::array{json::string(entry.key), json::string(entry.value),
                                  json::string(properties_wire(entry))});
  }
  out["baggage"] = std::move(entries);
  return out;
}

json::value run_case(const json::object& test) {
  // Beast's fields keep the fields' order, as an HTTP server receives them.
  http::fields in;
  if (const json::value* headers = test.if_contains("headers")) {
    for (const json::value& field : headers->as_array()) {
      in.insert(str(field.as_array()[0]), str(field.as_array()[1]));
    }
  }
  json::object result;
  ctxpool::context ctx;
  ctx.run([&] {
    const ctxpool::trace_context extracted = ctxpool::extract(in);
    result["extracted"] = describe(extracted, ctxpool::current_baggage(), extracted.remote);

    // Programmatic changes, as a service would make them before calling on.
    if (const json::value* sets = test.if_contains("setTracestate")) {
      ctxpool::trace_context changed = extracted;
      for (const json::value& kv : sets->as_array()) {
        changed.state.set(str(kv.as_array()[0]), str(kv.as_array()[1]));
      }
      (void)ctxpool::trace_context_var().set(changed);
    }
    if (const json::value* sets = test.if_contains("setBaggage")) {
      ctxpool::baggage bag = ctxpool::current_baggage();
      for (const json::value& item : sets->as_array()) {
        const json::array& a = item.as_array();
        std::vector<ctxpool::baggage_property> properties;
        if (a.size() > 2) {
          for (const json::value& p : a[2].as_array()) {
            const json::array& pa = p.as_array();
            properties.push_back(
                {str(pa[0]), pa.size() > 1 ? std::optional(str(pa[1])) : std::nullopt});
          }
        }
        bag.set(str(a[0]), str(a[1]), std::move(properties));
      }
      (void)ctxpool::baggage_var().set(bag);
    }

    std::map<std::string, std::string> out;
    const ctxpool::span_id operation = ctxpool::inject(out);
    ctxpool::trace_context sent = *ctxpool::current_trace();
    sent.parent = operation;
    json::object injected = describe(sent, ctxpool::current_baggage(), true).as_object();
    json::object headers;
    for (const auto& [name, value] : out) headers[name] = value;
    injected["headers"] = std::move(headers);
    result["injected"] = std::move(injected);
  });
  return result;
}

}  // namespace

int main() {
  try {
    const std::string input{std::istreambuf_iterator<char>(std::cin),
                            std::istreambuf_iterator<char>()};
    json::array results;
    const json::value cases = json::parse(input);
    for (const json::value& test : cases.as_array()) results.push_back(run_case(test.as_object()));
    std::cout << json::serialize(results) << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "otel_interop_driver: " << e.what() << '\n';
    return 2;
  }
}
