// Readable type names for diagnostics and error messages.
#pragma once

#include <string>
#include <typeinfo>

namespace ctxpool::detail {

/// A readable name for `type` ("std::string", not "NSt7__cxx1112basic_string...").
std::string demangle(const std::type_info& type);

}  // namespace ctxpool::detail
