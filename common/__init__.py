"""What the gateway, the dispatcher and the workers share: the store, the wire
protocol, payload checks, settings and errors. Nothing here imports a service."""
