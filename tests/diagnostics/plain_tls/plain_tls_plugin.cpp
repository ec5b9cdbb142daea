// A module the test loads with dlopen after start(): its thread_local must be
// discovered then.
thread_local int plugin_state = 0;

extern "C" __attribute__((visibility("default"))) void plugin_set(int v) { plugin_state = v; }
extern "C" __attribute__((visibility("default"))) int plugin_get() { return plugin_state; }
