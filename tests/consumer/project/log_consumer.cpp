// A consumer of the installed logging integration: a request id in an spdlog line.
#include <ctxpool/context.hpp>
#include <ctxpool/log/spdlog.hpp>

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

namespace {
ctxpool::context_var<std::string> request_id{"request_id"};
}

int main() {
  std::ostringstream out;
  auto fields = std::make_shared<ctxpool::log::context_fields>();
  fields->add(request_id);
  spdlog::logger logger("consumer", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger.set_formatter(ctxpool::log::make_formatter(fields, "[%*] %v"));
  ctxpool::set_scope scope(request_id, "req-42");
  logger.info("hello");
  if (out.str() != "[request_id=req-42] hello\n") {
    std::fprintf(stderr, "log_consumer: got '%s'\n", out.str().c_str());
    return 1;
  }
  std::puts("log_consumer: ok");
  return 0;
}
