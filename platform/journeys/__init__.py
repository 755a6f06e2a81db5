"""Event-triggered, multi-step journeys: durable per-consumer state machines whose steps run as idempotent tasks."""
