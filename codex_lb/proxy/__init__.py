"""The proxy: routes, the SSE relay and failover, pricing, the request log."""
