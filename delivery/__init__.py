"""Delivery: the one submission path, durable queue, routing, retries, bounces, DKIM."""
