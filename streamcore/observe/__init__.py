"""Operating a running job: status snapshots, Prometheus metrics, the dashboard and the REST API.

::

    status.py      JobObserver: the job's thread publishes a JSON-ready status every second
    timing.py      BusyTimer: busy / backpressured time per operator, event-time latency at sinks
    prometheus.py  JobMetrics: a prometheus_client registry (counters, gauges, histograms)
    server.py      JobHTTPServer: /metrics, the dashboard (/), the REST API (/api/v1/...)
    service.py     JobService and MetricsConfig: what env.enable_metrics(...) turns on
    client.py      the REST client behind `streamcore status|savepoint|stop URL`
    static/        dashboard.html (plain HTML and JavaScript, no build step)

Nothing here is imported by ``import streamcore``; ``prometheus_client`` is imported when a
job with metrics starts.
"""
