// Placeholder until the diagnostics layer lands.
namespace ctxpool::diagnostics {}
