// Cancellation states, their parent links, and the deadline watcher.
#include <ctxpool/cancellation.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

namespace ctxpool {
namespace detail {

/// One cancellation.
///
/// Whether it is cancelled is its own reason, else the nearest ancestor's,
/// else its deadline: a read of the chain, so that making one (a task group
/// makes one per group) costs one allocation and no registration. The
/// callback machinery (a std::stop_source, and a link that cancels it when
/// the parent's fires) is built only when someone registers a callback, on
/// this state and then up the chain, so that a cancel reaches every callback
/// registered below it.
struct cancel_state {
  /// A child's link: the parent's callbacks firing cancel the child's.
  struct cascade {
    cancel_state* child;
    void operator()() const noexcept { child->fire(); }
  };

  cancel_state(std::shared_ptr<cancel_state> parent_state, deadline_clock::time_point own_deadline)
      : parent(std::move(parent_state)), deadline(own_deadline) {
    if (parent != nullptr && parent->deadline < deadline)
      deadline = parent->deadline;  // only tightened
  }

  void cancel(cancel_reason why) noexcept {
    cancel_reason expected = cancel_reason::none;
    reason.compare_exchange_strong(expected, why, std::memory_order_acq_rel);
    fire();
  }

  /// Runs the callbacks registered here and below, if any.
  void fire() noexcept {
    std::stop_source* source = nullptr;
    {
      std::lock_guard lock(mutex);
      if (stop) source = &*stop;
    }
    // Outside the lock: callbacks may register more. `stop` is never reset.
    if (source != nullptr) source->request_stop();
  }

  /// The stop_source that on_cancel registers with, built on first use with
  /// its links up the chain.
  std::stop_source& callbacks() {
    {
      std::lock_guard lock(mutex);
      if (!stop) {
        stop.emplace();
        // Child before parent: locks are only taken up the chain.
        if (parent != nullptr) link.emplace(parent->callbacks().get_token(), cascade{this});
      }
    }
    // A cancel that happened before the source existed found nothing to fire.
    if (current_reason() != cancel_reason::none) stop->request_stop();
    return *stop;
  }

  [[nodiscard]] bool has_deadline() const noexcept {
    return deadline != deadline_clock::time_point::max();
  }

  [[nodiscard]] cancel_reason current_reason() const noexcept {
    for (const cancel_state* state = this; state != nullptr; state = state->parent.get()) {
      const cancel_reason why = state->reason.load(std::memory_order_acquire);
      if (why != cancel_reason::none) return why;
    }
    if (has_deadline() && deadline_clock::now() >= deadline) return cancel_reason::deadline;
    return cancel_reason::none;
  }

  std::atomic<cancel_reason> reason{cancel_reason::none};
  std::shared_ptr<cancel_state> parent;             // keeps the chain alive
  deadline_clock::time_point deadline;              // max(): none
  std::atomic<bool> watched{false};                 // handed to the deadline watcher
  std::mutex mutex;                                 // guards building `stop` and `link`
  std::optional<std::stop_source> stop;             // callbacks; built on first on_cancel
  std::optional<std::stop_callback<cascade>> link;  // last: unregistered first
};

context_var<std::shared_ptr<cancel_state>> current_cancel_state{"ctxpool.cancellation"};

namespace {

/// Runs the callbacks of deadlines that pass: one thread for the process,
/// started when the first deadline gets a callback, ended (joined) at exit.
/// Only deadlines that someone listens to are watched; `cancelled()` reads
/// the clock itself.
class deadline_watcher {
 public:
  static deadline_watcher& instance() {
    static deadline_watcher watcher;
    return watcher;
  }

  void watch(const std::shared_ptr<cancel_state>& state) {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    const bool earliest = due_.empty() || state->deadline < due_.begin()->first;
    due_.emplace(state->deadline, state);
    if (earliest) wake_.notify_one();
  }

  ~deadline_watcher() {
    {
      std::lock_guard lock(mutex_);
      ending_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  deadline_watcher() = default;

  void loop() {
    std::unique_lock lock(mutex_);
    while (!ending_) {
      if (due_.empty()) {
        wake_.wait(lock);
        continue;
      }
      const auto first = due_.begin();
      if (deadline_clock::now() < first->first) {
        wake_.wait_until(lock, first->first);
        continue;
      }
      std::weak_ptr<cancel_state> expired = first->second;
      due_.erase(first);
      lock.unlock();  // callbacks may register more deadlines
      if (std::shared_ptr<cancel_state> state = expired.lock())
        state->cancel(cancel_reason::deadline);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::multimap<deadline_clock::time_point, std::weak_ptr<cancel_state>> due_;
  bool ending_ = false;
  std::thread thread_;
};

/// The current context's cancellation without a reference count (the value
/// stays alive while the context is current and nothing sets the variable).
const std::shared_ptr<cancel_state>* peek_carried() noexcept {
  const std::uint32_t id = current_cancel_state.id();
  const get_cache_entry& entry = tls.cache[id & (get_cache_size - 1)];
  if (entry.tag == cache_tag(tls, id)) {
    return static_cast<const std::shared_ptr<cancel_state>*>(entry.value);
  }
  return static_cast<const std::shared_ptr<cancel_state>*>(lookup_set_value(id));
}

const cancel_state* raw(const std::shared_ptr<cancel_state>* state) noexcept {
  return state != nullptr ? state->get() : nullptr;
}

/// The current cancellation: the overlay's, made real, where one applies.
const std::shared_ptr<cancel_state>* peek_current() noexcept {
  const std::shared_ptr<cancel_state>* carried = peek_carried();
  if (const cancellation_overlay* overlay = active_overlay;
      CTXPOOL_UNLIKELY(overlay != nullptr) && raw(carried) == overlay->base) {
    return overlay->materialise(overlay->owner);
  }
  return carried;
}

cancel_reason reason_of(const cancel_state* state) noexcept {
  return state == nullptr ? cancel_reason::none : state->current_reason();
}

[[noreturn]] void throw_cancelled(cancel_reason why) {
  throw cancelled_error(why == cancel_reason::deadline
                            ? "the context's deadline has passed (ctxpool cancellation)"
                            : "the context's cancellation was requested (ctxpool cancellation)");
}

std::shared_ptr<cancel_state> make_child(deadline_clock::time_point deadline) {
  const std::shared_ptr<cancel_state>* parent = peek_current();
  return std::make_shared<cancel_state>(parent != nullptr ? *parent : nullptr, deadline);
}

}  // namespace

const cancellation_overlay* applicable_overlay() noexcept {
  const cancellation_overlay* overlay = active_overlay;
  if (overlay == nullptr || raw(peek_carried()) != overlay->base) return nullptr;
  return overlay;
}

const cancel_state* carried_cancel_state() noexcept { return raw(peek_carried()); }

map_node* capture_overlay(map_node* root) noexcept {
  const cancellation_overlay* overlay = active_overlay;
  const std::uint32_t id = current_cancel_state.id();
  const value_base* value = map_find(root, id);
  const cancel_state* carried =
      value != nullptr ? static_cast<const std::shared_ptr<cancel_state>*>(value->data())->get()
                       : nullptr;
  if (carried != overlay->base) return root;
  // Snapshots are taken in noexcept paths: out of memory here terminates,
  // as capture_carried does.
  map_node* result = map_insert(root, new value_holder<std::shared_ptr<cancel_state>>(
                                          id, *overlay->materialise(overlay->owner)));
  map_release(root);
  return result;
}

}  // namespace detail

struct cancellation_callback::registration {
  registration(std::stop_token token, std::function<void()> f)
      : callback(std::move(token), std::move(f)) {}
  std::stop_callback<std::function<void()>> callback;
};

cancellation_callback::cancellation_callback() noexcept = default;
cancellation_callback::cancellation_callback(cancellation_callback&&) noexcept = default;
cancellation_callback& cancellation_callback::operator=(cancellation_callback&&) noexcept = default;
cancellation_callback::~cancellation_callback() = default;

bool cancellation_token::cancelled() const noexcept {
  return detail::reason_of(state_.get()) != cancel_reason::none;
}

cancel_reason cancellation_token::reason() const noexcept {
  return detail::reason_of(state_.get());
}

std::optional<deadline_clock::time_point> cancellation_token::deadline() const noexcept {
  if (state_ == nullptr || !state_->has_deadline()) return std::nullopt;
  return state_->deadline;
}

void cancellation_token::throw_if_cancelled() const {
  if (const cancel_reason why = reason(); why != cancel_reason::none) detail::throw_cancelled(why);
}

cancellation_callback cancellation_token::on_cancel(std::function<void()> callback) const {
  cancellation_callback result;
  if (state_ == nullptr) return result;
  // A deadline passed but not yet acted on becomes a cancel now, so that the
  // callback runs at once, as for any cancellation that already happened.
  if (state_->current_reason() == cancel_reason::deadline) {
    state_->cancel(cancel_reason::deadline);
  } else if (state_->has_deadline() && !state_->watched.exchange(true)) {
    detail::deadline_watcher::instance().watch(state_);
  }
  result.registration_ = std::make_unique<cancellation_callback::registration>(
      state_->callbacks().get_token(), std::move(callback));
  return result;
}

cancellation_source::cancellation_source()
    : state_(detail::make_child(deadline_clock::time_point::max())) {}

cancellation_source::cancellation_source(deadline_clock::time_point deadline)
    : state_(detail::make_child(deadline)) {}

cancellation_source::cancellation_source(deadline_clock::duration timeout)
    : state_(detail::make_child(deadline_clock::now() + timeout)) {}

cancellation_source::cancellation_source(const cancellation_token& parent)
    : state_(std::make_shared<detail::cancel_state>(parent.state_,
                                                    deadline_clock::time_point::max())) {}

void cancellation_source::cancel() noexcept { state_->cancel(cancel_reason::requested); }

cancellation_token current_cancellation() noexcept {
  const std::shared_ptr<detail::cancel_state>* state = detail::peek_current();
  return state != nullptr ? cancellation_token(*state) : cancellation_token();
}

namespace this_task {

bool cancelled() noexcept {
  const std::shared_ptr<detail::cancel_state>* state = detail::peek_current();
  return state != nullptr && detail::reason_of(state->get()) != cancel_reason::none;
}

void throw_if_cancelled() {
  const std::shared_ptr<detail::cancel_state>* state = detail::peek_current();
  if (state == nullptr) return;
  if (const cancel_reason why = detail::reason_of(state->get()); why != cancel_reason::none) {
    detail::throw_cancelled(why);
  }
}

std::optional<deadline_clock::time_point> deadline() noexcept {
  const std::shared_ptr<detail::cancel_state>* state = detail::peek_current();
  if (state == nullptr || *state == nullptr || !(*state)->has_deadline()) return std::nullopt;
  return (*state)->deadline;
}

}  // namespace this_task
}  // namespace ctxpool
