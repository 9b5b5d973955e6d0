"""The business core and the process: config, store, orders, routing, HTTP API, command line."""
