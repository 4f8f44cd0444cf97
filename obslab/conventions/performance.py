"""The performance-aggregator's metric and label names (ml/performance/)."""

from __future__ import annotations

from obslab.conventions.alerting import L_SLO, L_TEAM
from obslab.conventions.loadgen import L_JOURNEY
from obslab.conventions.metrics import (
    L_CURRENCY,
    L_DECISION,
    L_MERCHANT_CATEGORY,
    L_SERVICE,
    L_TYPE,
    L_WINDOW,
    MetricSpec,
)

# --- performance aggregation: score, SLO/SLA, business KPIs, capacity and cost ---------------

L_COMPONENT = "component"     # a lab component (capacity, cost)
L_INPUT = "input"
L_PART = "part"               # a part of the performance score: latency, success, throughput
L_SLA = "sla"
L_RESOURCE = "resource"
L_BAND = "band"
L_STAGE = "stage"

# Parts of the score and the inputs that explain each (label values).
PART_LATENCY = "latency"
PART_SUCCESS = "success"
PART_THROUGHPUT = "throughput"

PERFORMANCE_PART = MetricSpec(
    "transaction_performance_part", "gauge",
    "One part of transaction_performance_score, 0 (bad) to 1 (meets its objective): latency, success, throughput.",
    (L_TYPE, L_SERVICE, L_PART))
PERFORMANCE_INPUT = MetricSpec(
    "transaction_performance_input", "gauge",
    "A measured input or objective of transaction_performance_score, in its own unit (seconds, ratio, per second).",
    (L_TYPE, L_SERVICE, L_INPUT))

SLO_COMPLIANCE = MetricSpec(
    "slo_compliance_ratio", "gauge",
    "Share of good events of an SLO over a window (7d, 30d, period): 1 - the window's mean 5-minute error ratio.",
    (L_SLO, L_SERVICE, L_TEAM, L_WINDOW))
SLO_BUDGET_REMAINING = MetricSpec(
    "slo_error_budget_remaining_window_ratio", "gauge",
    "Error budget left over a window (7d, 30d, period): 1 untouched, 0 spent, negative overspent.",
    (L_SLO, L_SERVICE, L_TEAM, L_WINDOW))
SLA_AVAILABILITY = MetricSpec(
    "sla_availability_ratio", "gauge",
    "Availability of a contractual SLA over its period to date (the calendar month): good / all requests.",
    (L_SLA,))
SLA_OBJECTIVE = MetricSpec(
    "sla_objective_ratio", "gauge", "The availability an SLA promises over its period.", (L_SLA,))
SLA_BUDGET_REMAINING = MetricSpec(
    "sla_error_budget_remaining_ratio", "gauge",
    "Share of the SLA's allowed failures still unspent this period (below 0: the SLA is breached).", (L_SLA,))

BUSINESS_TRANSACTIONS = MetricSpec(
    "business_transactions_per_minute", "gauge", "Completed money movements per minute, by type.", (L_TYPE,))
BUSINESS_VALUE = MetricSpec(
    "business_transaction_value_per_minute", "gauge",
    "Value of completed money movements per minute in major units, by type and currency.", (L_TYPE, L_CURRENCY))
BUSINESS_VALUE_SHARE = MetricSpec(
    "business_transaction_value_band_ratio", "gauge",
    "Share of completed money movements by value band (never per customer).", (L_TYPE, L_BAND))
BUSINESS_PAYMENT_SUCCESS = MetricSpec(
    "business_payment_success_ratio", "gauge",
    "Share of payments completed, by merchant category (declines and refusals count as not completed).",
    (L_MERCHANT_CATEGORY,))
BUSINESS_FRAUD_DECISIONS = MetricSpec(
    "business_fraud_decisions_per_minute", "gauge", "Fraud decisions per minute, by decision.", (L_DECISION,))
BUSINESS_ACTIVE_CUSTOMERS = MetricSpec(
    "business_active_customers", "gauge", "Distinct customers active at the gateway over a window.", (L_WINDOW,))
BUSINESS_FUNNEL = MetricSpec(
    "business_journey_funnel_per_minute", "gauge",
    "The load generator's journeys per minute at each stage: started, each step reached, completed, "
    "abandoned, failed.", (L_JOURNEY, L_STAGE))
BUSINESS_CONVERSION = MetricSpec(
    "business_journey_conversion_ratio", "gauge", "Completed journeys over started journeys.", (L_JOURNEY,))

CAPACITY_REQUESTS_PER_CPU = MetricSpec(
    "capacity_requests_per_cpu_second", "gauge",
    "HTTP requests a component served per CPU-second it used (its efficiency).", (L_COMPONENT,))
CAPACITY_CPU = MetricSpec(
    "capacity_cpu_utilisation_ratio", "gauge",
    "CPU a component uses of what it can use (one core: one Python process is bound by its GIL).", (L_COMPONENT,))
CAPACITY_HEADROOM = MetricSpec(
    "capacity_headroom_ratio", "gauge",
    "Share of a component's capacity still free: 1 - CPU utilisation (0: saturated).", (L_COMPONENT,))
CAPACITY_SPARE_RPS = MetricSpec(
    "capacity_spare_requests_per_second", "gauge",
    "More requests per second a component could take before its one core saturates, at its measured "
    "efficiency (requests per CPU-second x the CPU it does not use yet).",
    (L_COMPONENT,))
COST_MONTHLY = MetricSpec(
    "cost_monthly_estimate", "gauge",
    "Estimated monthly cost of a component by resource (cpu, memory, series), in the cost model's currency.",
    (L_COMPONENT, L_RESOURCE, L_CURRENCY))

PERFORMANCE_METRICS: tuple[MetricSpec, ...] = (
    PERFORMANCE_PART, PERFORMANCE_INPUT, SLO_COMPLIANCE, SLO_BUDGET_REMAINING, SLA_AVAILABILITY, SLA_OBJECTIVE,
    SLA_BUDGET_REMAINING, BUSINESS_TRANSACTIONS, BUSINESS_VALUE, BUSINESS_VALUE_SHARE, BUSINESS_PAYMENT_SUCCESS,
    BUSINESS_FRAUD_DECISIONS, BUSINESS_ACTIVE_CUSTOMERS, BUSINESS_FUNNEL, BUSINESS_CONVERSION,
    CAPACITY_REQUESTS_PER_CPU, CAPACITY_CPU, CAPACITY_HEADROOM, CAPACITY_SPARE_RPS, COST_MONTHLY,
)
