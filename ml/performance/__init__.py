"""The performance-aggregator (port 8093): the transaction performance score, SLO and SLA
compliance, business KPIs, capacity and cost, aggregated from Prometheus (service.py)."""
