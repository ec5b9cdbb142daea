// Context variables as Boost.Log attributes, evaluated when a record is made.
//
// Boost.Log asks every attribute for its value when a record is opened, on
// the thread that logs, so a record keeps the values of the context that made
// it also when an asynchronous sink formats it later on its own thread:
//
//   boost::log::core::get()->add_global_attribute(
//       "RequestID", ctxpool::log::context_attribute(request_id));
//   sink->set_formatter(expr::stream << "[" << expr::attr<std::string>("RequestID") << "] "
//                                    << expr::smessage);
//
// A variable with neither a value nor a default gives the record no such
// attribute (a formatter then writes nothing for it, a filter sees it absent).
//
// @par Thread safety
// The attribute may be added to the core, a logger or a scope and used from
// any number of threads: each reads the calling thread's context.
//
// @par Lifetime
// The variable must outlive the attribute (declare it at namespace scope);
// attribute values are copies of the variable's value.
#pragma once

#include <boost/log/attributes/attribute.hpp>
#include <boost/log/attributes/attribute_value.hpp>
#include <boost/log/attributes/attribute_value_impl.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/log/detail/current_value.hpp>

namespace ctxpool::log {

/// A Boost.Log attribute whose value is `var`'s in the logging thread's context.
template <class T>
class context_attribute : public boost::log::attribute {
  class impl final : public boost::log::attribute::impl {
   public:
    explicit impl(const context_var<T>& var) noexcept : var_(var) {}
    boost::log::attribute_value get_value() override {
      const T* value = detail::current_value(var_);
      if (value == nullptr) return boost::log::attribute_value();
      return boost::log::attributes::make_attribute_value(*value);
    }

   private:
    const context_var<T>& var_;
  };

 public:
  /// An attribute reading `var` (held by reference) when each record is made.
  explicit context_attribute(const context_var<T>& var) : boost::log::attribute(new impl(var)) {}
};

}  // namespace ctxpool::log
