// <ctxpool/propagation/grpc.hpp>: the trace and baggage cross a real gRPC
// call (client and server in this process, over loopback TCP): what the
// client's context injects into its ClientContext, the server's handler
// extracts from its own context. The generic API keeps the test free of
// generated code.
#include <ctxpool/propagation/grpc.hpp>

#include <ctxpool/propagation.hpp>

#include <doctest/doctest.h>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/byte_buffer.h>

#include "support/watchdog.hpp"

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace {

/// What the server's handler found in its context after extract.
struct received {
  std::string traceparent;  // as the handler would send it on, with the caller's op as parent
  std::string parent;
  std::string tracestate;
  std::string baggage;
  bool remote = false;
};

/// Echoes each call's one message back; before that, extracts the call's
/// metadata in a fresh context, as a request handler does.
class echo_service final : public grpc::CallbackGenericService {
 public:
  std::future<received> next_call() {
    std::lock_guard lock(mutex_);
    promise_ = std::promise<received>();
    return promise_.get_future();
  }

 private:
  class reactor final : public grpc::ServerGenericBidiReactor {
   public:
    void start() { StartRead(&message_); }
    void OnReadDone(bool ok) override {
      if (ok) {
        StartWriteAndFinish(&message_, grpc::WriteOptions(), grpc::Status::OK);
      } else {
        Finish(grpc::Status::OK);
      }
    }
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer message_;
  };

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* call) override {
    received seen;
    ctxpool::context handler;
    handler.run([&] {
      const ctxpool::trace_context t = ctxpool::extract(*call);
      seen.remote = t.remote;
      seen.parent = t.parent.to_string();
      seen.tracestate = t.state.format();
      seen.baggage = ctxpool::current_baggage().format();
      std::map<std::string, std::string> onward;
      ctxpool::inject(onward);
      seen.traceparent = onward.at("traceparent");
    });
    {
      std::lock_guard lock(mutex_);
      promise_.set_value(std::move(seen));
    }
    auto* r = new reactor;
    r->start();
    return r;
  }

  std::mutex mutex_;
  std::promise<received> promise_;
};

/// A server on a loopback port of its own, shut down (bounded) at the end.
struct test_server {
  echo_service service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  test_server() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterCallbackGenericService(&service);
    server = builder.BuildAndStart();
    REQUIRE(server);
    REQUIRE(port != 0);
  }
  ~test_server() { server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10)); }
};

/// One unary call carrying what `ctxpool::inject` adds; its status, waited for (bounded).
grpc::Status call(int port, grpc::ClientContext& context) {
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  context.set_deadline(std::chrono::system_clock::now() + ctxpool_test::hang_bound);
  grpc::Slice slice(std::string("ping"));
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/ctxpool.test.Echo/Call", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  auto finished = done.get_future();
  return ctxpool_test::get_within(finished, "a gRPC call did not finish");
}

}  // namespace

TEST_CASE("gRPC: the server's handler extracts what the client's context injected") {
  test_server server;
  ctxpool::context request;  // a service in the middle of a trace, serving one request
  request.run([&] {
    ctxpool::extract(std::map<std::string, std::string>{
        {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
        {"baggage", "userId=alice,serverNode=DF%2028;ttl=60"}});
    for (int i = 0; i < 3; ++i) {
      auto seen_future = server.service.next_call();
      grpc::ClientContext context;
      const ctxpool::span_id op = ctxpool::inject(context);
      REQUIRE(call(server.port, context).ok());
      const received seen = ctxpool_test::get_within(seen_future);
      CHECK(seen.remote);
      // Same trace and flags; the parent is this call's own operation.
      CHECK(seen.traceparent.substr(0, 36) == "00-0af7651916cd43dd8448eb211c80319c-");
      CHECK(seen.traceparent.ends_with("-01"));
      CHECK(seen.parent == op.to_string());
      CHECK(seen.parent != "b7ad6b7169203331");
      CHECK(seen.tracestate == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
      CHECK(seen.baggage == "userId=alice,serverNode=DF%2028;ttl=60");
    }
  });
}

TEST_CASE("gRPC: a call without trace metadata starts a new trace on the server") {
  test_server server;
  auto seen_future = server.service.next_call();
  grpc::ClientContext context;  // nothing injected
  REQUIRE(call(server.port, context).ok());
  const received seen = ctxpool_test::get_within(seen_future);
  CHECK_FALSE(seen.remote);
  CHECK(seen.tracestate.empty());
  CHECK(seen.baggage.empty());
}

TEST_CASE("gRPC: received metadata maps are read ignoring case, repeated fields combined") {
  const std::string first = "rojo=1", second = "congo=2";
  // Fields of one key keep the order they came in (std::multimap keeps
  // insertion order among equal keys).
  const std::multimap<grpc::string_ref, grpc::string_ref> metadata{
      {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
      {"tracestate", first},
      {"tracestate", second}};
  const std::multimap<grpc::string_ref, grpc::string_ref> capitalised{
      {"TraceParent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}};
  ctxpool::context ctx;
  ctx.run([&] {
    const ctxpool::trace_context t = ctxpool::extract(metadata);
    CHECK(t.remote);
    CHECK(t.state.format() == "rojo=1,congo=2");
    CHECK(ctxpool::extract(capitalised).remote);
  });
}
