// gRPC metadata as a text-map carrier: `inject` into a call's
// `grpc::ClientContext`, `extract` from a server's context or any received
// metadata map.
//
//   grpc::ClientContext call;
//   ctxpool::inject(call);                       // traceparent, tracestate, baggage
//   stub->async()->Method(&call, &request, &response, on_done);
//
//   grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* server, ...) {
//     ctxpool::extract(*server);                 // or extract(server->client_metadata())
//     ...
//   }
//
// Header-only: include it where gRPC C++ is used and link gRPC++ as that
// code already does (Debian: libgrpc++-dev); the `ctxpool::propagation`
// target itself does not depend on gRPC. gRPC sends metadata keys in lower
// case, as `inject` writes them; `extract` matches them ignoring case anyway.
//
// @par Thread safety
// As for the gRPC object passed in: a `ClientContext` is written by one
// thread before its call starts, a server context is read by its handler.
//
// @par Lifetime
// `extract` copies what it keeps; nothing refers to the metadata after it
// returns. `inject` adds the fields to the `ClientContext`, which owns them.
#pragma once

#include <ctxpool/text_map.hpp>

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/string_ref.h>

#include <concepts>
#include <map>
#include <string>
#include <string_view>

namespace ctxpool {

/// Received gRPC metadata (`ServerContextBase::client_metadata()`,
/// `ClientContext::GetServerInitialMetadata()`): read by `extract`.
template <>
struct text_map_traits<std::multimap<grpc::string_ref, grpc::string_ref>> {
  using metadata = std::multimap<grpc::string_ref, grpc::string_ref>;
  template <class F>
  static void for_each(const metadata& carrier, std::string_view name, F&& f) {
    for (const auto& [key, value] : carrier) {
      if (detail::ascii_iequals(std::string_view(key.data(), key.size()), name))
        f(std::string_view(value.data(), value.size()));
    }
  }
  template <class F>
  static void for_each_field(const metadata& carrier, F&& f) {
    for (const auto& [key, value] : carrier)
      f(std::string_view(key.data(), key.size()), std::string_view(value.data(), value.size()));
  }
};

/// A server's context (`grpc::ServerContext`, `grpc::CallbackServerContext`,
/// generic ones): `extract` reads the metadata the client sent.
template <class Context>
  requires std::derived_from<Context, grpc::ServerContextBase>
struct text_map_traits<Context> {
  using metadata_traits = text_map_traits<std::multimap<grpc::string_ref, grpc::string_ref>>;
  template <class F>
  static void for_each(const Context& context, std::string_view name, F&& f) {
    metadata_traits::for_each(context.client_metadata(), name, f);
  }
  template <class F>
  static void for_each_field(const Context& context, F&& f) {
    metadata_traits::for_each_field(context.client_metadata(), f);
  }
};

/// An outgoing call's context: `inject` adds the fields as metadata. gRPC
/// offers no way to remove metadata already added, so inject once per
/// `ClientContext` (a `ClientContext` serves one call anyway).
template <>
struct text_map_traits<grpc::ClientContext> {
  static void set(grpc::ClientContext& context, std::string_view name, std::string_view value) {
    context.AddMetadata(std::string(name), std::string(value));
  }
};

}  // namespace ctxpool
