"""gateway: the public API; verifies tokens, routes to the services, keeps an audit log."""
