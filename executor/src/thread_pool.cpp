// Placeholder until the executor lands.
namespace ctxpool {}
