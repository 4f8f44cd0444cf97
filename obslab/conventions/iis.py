"""Windows IIS names: the seed's metric families and labels, and the estate's sites."""

from __future__ import annotations

from dataclasses import dataclass

from obslab.conventions.metrics import L_ERROR_CODE, L_METHOD, MetricSpec

# --- Windows IIS (the seed notes' schema: names and labels must not drift) ----------------------

L_SITE = "site"
L_APP_POOL = "app_pool"
L_APP_NAME = "app_name"
L_EXCEPTION_TYPE = "exception_type"


@dataclass(frozen=True)
class IisSite:
    """One IIS site with its application pool and .NET application."""

    site: str
    app_pool: str
    app_name: str
    share: float    # of the estate's base load


IIS_SITES: tuple[IisSite, ...] = (
    IisSite("OnlineBanking", "OnlineBankingAppPool", "OnlineBanking", 0.50),
    IisSite("MobileAPI", "MobileAPIAppPool", "MobileAPI", 0.35),
    IisSite("CorporatePortal", "CorporatePortalAppPool", "CorporatePortal", 0.15),
)

# IIS worker process states as Windows reports them (WAS): the gauge's value is the state code.
IIS_APP_POOL_RUNNING = 3
IIS_APP_POOL_STOPPED = 5   # crashed and disabled by rapid-fail protection

# Seconds. Around the seed's Gaussian(50 ms, 20 ms), with room for slow-response faults.
IIS_EXECUTION_TIME_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0,
)

IIS_REQUESTS = MetricSpec(
    "windows_iis_requests_total", "counter", "Requests served by an IIS site, by HTTP method.",
    (L_METHOD, L_SITE),
)
IIS_CURRENT_CONNECTIONS = MetricSpec(
    "windows_iis_current_connections", "gauge", "Open connections to an IIS site.", (L_SITE,),
)
IIS_SERVER_ERRORS = MetricSpec(
    "windows_iis_server_errors_total", "counter", "Responses with a 5xx status.", (L_SITE,),
)
IIS_CLIENT_ERRORS = MetricSpec(
    "windows_iis_client_errors_total", "counter", "Responses with a 4xx status (mostly 404).", (L_SITE,),
)
IIS_EXECUTION_TIME = MetricSpec(
    "windows_iis_request_execution_time", "histogram",
    "Time to execute a request, in seconds.", (L_SITE,), IIS_EXECUTION_TIME_BUCKETS,
)
IIS_APP_POOL_STATE = MetricSpec(
    "windows_iis_app_pool_state", "gauge",
    "State code of an application pool (3 running, 5 stopped).", (L_APP_POOL,),
)
NETFRAMEWORK_EXCEPTIONS = MetricSpec(
    "windows_netframework_exceptions_thrown_total", "counter",
    ".NET exceptions thrown, by application and exception type.", (L_APP_NAME, L_EXCEPTION_TYPE),
)
CUSTOM_ERRORS = MetricSpec(
    "windows_custom_errors_total", "counter",
    "Custom error pages served, by HTTP status code and application.", (L_ERROR_CODE, L_APP_NAME),
)
IIS_FAMILIES: tuple[MetricSpec, ...] = (
    IIS_REQUESTS, IIS_CURRENT_CONNECTIONS, IIS_SERVER_ERRORS, IIS_CLIENT_ERRORS, IIS_EXECUTION_TIME,
    IIS_APP_POOL_STATE, NETFRAMEWORK_EXCEPTIONS, CUSTOM_ERRORS,
)

# An exception storm is a database in trouble: one type floods the counters.
NETFRAMEWORK_STORM_EXCEPTION = "System.Data.SqlClient.SqlException"
# Status codes the custom error pages exist for: not found, application error, pool down.
IIS_CUSTOM_ERROR_NOT_FOUND = "404"
IIS_CUSTOM_ERROR_APPLICATION = "500"
IIS_CUSTOM_ERROR_UNAVAILABLE = "503"
IIS_CUSTOM_ERROR_CODES: tuple[str, ...] = (
    IIS_CUSTOM_ERROR_NOT_FOUND, IIS_CUSTOM_ERROR_APPLICATION, IIS_CUSTOM_ERROR_UNAVAILABLE,
)
