// Context variables in spdlog's log lines, also with its async logger.
//
// A pattern flag (`%*` by default) writes the chosen context variables as
// `name=value` pairs (`request_id=r-42 user=bob`; unset ones are left out):
//
//   auto fields = std::make_shared<ctxpool::log::context_fields>();
//   fields->add(request_id).add(user);
//   logger->set_formatter(ctxpool::log::make_formatter(fields, "[%l] %* %v"));
//
// The values must be those of the context that *made* the record. A
// synchronous logger formats on the calling thread, so the flag reads the
// context there. spdlog's async logger formats later on its own thread, where
// the caller's context is not current (spdlog's MDC, a thread_local map, has
// the same problem and does not support async mode): log through
// `ctxpool::log::capture_context(async_logger, fields)`, which renders the
// fields on the calling thread when the record is made and passes them, with
// the record, to the async logger and on to the formatter:
//
//   auto async = std::make_shared<spdlog::async_logger>("app", sink, spdlog::thread_pool());
//   async->set_formatter(ctxpool::log::make_formatter(fields, "[%l] %* %v"));
//   std::shared_ptr<spdlog::logger> logger = ctxpool::log::capture_context(async, fields);
//
// @par Thread safety
// A `context_fields` is read concurrently by every logging thread; build it
// (`add`) before sharing it. Loggers and formatters follow spdlog's rules: a
// formatter belongs to one sink, which serialises its use.
//
// @par Lifetime
// Formatters and loggers share the `context_fields`; the variables it names
// must outlive it (declare them at namespace scope).
#pragma once

#include <charconv>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/details/log_msg.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/formatter.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>

#include <ctxpool/context.hpp>
#include <ctxpool/log/detail/current_value.hpp>

namespace ctxpool::log {

/// The context variables that log lines show, in the order added.
class context_fields {
 public:
  /// Shows `var` as `<var.name()>=<value>`; the value is written with fmt.
  template <class T>
  context_fields& add(const context_var<T>& var) {
    return add(var.name(), var);
  }

  /// Shows `var` as `<name>=<value>`.
  template <class T>
  context_fields& add(std::string name, const context_var<T>& var) {
    renderers_.push_back([name = std::move(name), &var](std::string& out) {
      const T* value = detail::current_value(var);
      if (value == nullptr) return;
      if (!out.empty()) out += ' ';
      out += name;
      out += '=';
      fmt::format_to(std::back_inserter(out), "{}", *value);
    });
    return *this;
  }

  /// The calling thread's current values, `name=value` separated by spaces.
  [[nodiscard]] std::string render() const {
    std::string out;
    for (const auto& renderer : renderers_) renderer(out);
    return out;
  }

 private:
  std::vector<std::function<void(std::string&)>> renderers_;
};

namespace detail {

// A record whose fields were captured when it was made carries them in front
// of its payload: marker, length in decimal, ':', the fields, then the text.
inline constexpr char captured_marker = '\x1e';

inline std::string frame_captured(std::string_view fields, std::string_view payload) {
  std::string framed;
  framed.reserve(fields.size() + payload.size() + 12);
  framed += captured_marker;
  framed += std::to_string(fields.size());
  framed += ':';
  framed += fields;
  framed += payload;
  return framed;
}

/// Splits a framed payload into (fields, text); nullopt when not framed.
inline std::optional<std::pair<std::string_view, std::string_view>> unframe_captured(
    std::string_view payload) {
  if (payload.empty() || payload.front() != captured_marker) return std::nullopt;
  const std::size_t colon = payload.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::size_t length = 0;
  const auto [end, error] = std::from_chars(payload.data() + 1, payload.data() + colon, length);
  if (error != std::errc{} || end != payload.data() + colon ||
      length > payload.size() - colon - 1) {
    return std::nullopt;
  }
  return std::pair{payload.substr(colon + 1, length), payload.substr(colon + 1 + length)};
}

}  // namespace detail

/// A formatter for an spdlog pattern with a flag for the context fields.
///
/// Fields captured when the record was made (capture_context) are
/// written as captured; otherwise the flag reads the formatting thread's
/// context, which for a synchronous logger is the caller's.
class context_formatter final : public spdlog::formatter {
 public:
  /// @param pattern an spdlog pattern; `%<flag>` is replaced by the fields.
  context_formatter(std::shared_ptr<const context_fields> fields, std::string pattern,
                    char flag = '*')
      : fields_(std::move(fields)),
        pattern_(std::move(pattern)),
        flag_(flag),
        inner_(std::make_unique<spdlog::pattern_formatter>()) {
    inner_->add_flag<fields_flag>(flag_, this).set_pattern(pattern_);
  }

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto captured =
        detail::unframe_captured(std::string_view(msg.payload.data(), msg.payload.size()));
    if (!captured) {
      captured_.reset();
      inner_->format(msg, dest);
      return;
    }
    captured_ = captured->first;
    spdlog::details::log_msg text_only = msg;
    text_only.payload = spdlog::string_view_t(captured->second.data(), captured->second.size());
    inner_->format(text_only, dest);
  }

  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<context_formatter>(fields_, pattern_, flag_);
  }

 private:
  class fields_flag final : public spdlog::custom_flag_formatter {
   public:
    explicit fields_flag(const context_formatter* owner) : owner_(owner) {}
    void format(const spdlog::details::log_msg&, const std::tm&,
                spdlog::memory_buf_t& dest) override {
      if (owner_->captured_) {
        dest.append(owner_->captured_->data(),
                    owner_->captured_->data() + owner_->captured_->size());
      } else {
        const std::string live = owner_->fields_->render();
        dest.append(live.data(), live.data() + live.size());
      }
    }
    [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
      return std::make_unique<fields_flag>(owner_);
    }

   private:
    const context_formatter* owner_;
  };

  std::shared_ptr<const context_fields> fields_;
  std::string pattern_;
  char flag_;
  std::optional<std::string_view> captured_;  // the record being formatted, if captured
  std::unique_ptr<spdlog::pattern_formatter> inner_;
};

/// A formatter for `pattern`, with `%<flag>` for the context fields.
[[nodiscard]] inline std::unique_ptr<spdlog::formatter> make_formatter(
    std::shared_ptr<const context_fields> fields, std::string pattern, char flag = '*') {
  return std::make_unique<context_formatter>(std::move(fields), std::move(pattern), flag);
}

/// A sink that captures the context fields on the thread that logs and
/// hands the record, fields attached, to another logger (see capture_context).
class context_capture_sink final : public spdlog::sinks::sink {
 public:
  context_capture_sink(std::shared_ptr<spdlog::logger> target,
                       std::shared_ptr<const context_fields> fields)
      : target_(std::move(target)), fields_(std::move(fields)) {}

  // Runs on the thread that logs: the fields are rendered now, from its context.
  void log(const spdlog::details::log_msg& msg) override {
    const std::string framed = detail::frame_captured(
        fields_->render(), std::string_view(msg.payload.data(), msg.payload.size()));
    target_->log(msg.time, msg.source, msg.level,
                 spdlog::string_view_t(framed.data(), framed.size()));  // copied if queued
  }
  void flush() override { target_->flush(); }
  // Formatting is the target's sinks' business.
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}

 private:
  std::shared_ptr<spdlog::logger> target_;
  std::shared_ptr<const context_fields> fields_;
};

/// A logger that captures the context fields when a record is made, on the
/// thread that logs, and passes the record on to `target`: typically
/// spdlog's `async_logger`, whose formatting runs later on its own thread.
///
/// The result has `target`'s name and level (set its level to filter
/// earlier); `target`'s sinks need a `context_formatter` (make_formatter),
/// as any other formatter would print the captured fields' framing.
[[nodiscard]] inline std::shared_ptr<spdlog::logger> capture_context(
    std::shared_ptr<spdlog::logger> target, std::shared_ptr<const context_fields> fields) {
  auto front = std::make_shared<spdlog::logger>(
      target->name(), std::make_shared<context_capture_sink>(target, std::move(fields)));
  front->set_level(target->level());
  return front;
}

}  // namespace ctxpool::log
